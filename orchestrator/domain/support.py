"""Outages by ZIP code and a keyword search over the knowledge base."""

from __future__ import annotations

import re

from sqlalchemy import select

from agents.ports import Article, NotFound, Outage
from orchestrator.domain.customers import normalize_zip
from orchestrator.domain.db import Store
from orchestrator.domain.models import ArticleRow, OutageRow

# Words that say nothing about the problem; dropping them keeps "my" or "the" from matching every article.
_STOPWORD_TEXT = """
a an and are as at be but by can could do does for from have how i i'm im is it its it's me my of on or our
please so some the there this to too up us was we what when where why will with would you your keeps keep
really very just get got help need want
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Callers and speech-to-text spell the same thing several ways; map each spelling to the tag we use.
_SYNONYMS = {
    "wi-fi": "wifi",
    "wireless": "wifi",
    "reboot": "restart",
    "rebooting": "restart",
    "restarting": "restart",
    "reset": "restart",
    "modem": "router",
    "gateway": "router",
    "box": "router",
    "forgot": "password",
    "forgotten": "password",
    "login": "password",
    "log": "password",
    "passcode": "password",
    "slow": "slow",
    "slowly": "slow",
    "sluggish": "slow",
    "lag": "slow",
    "laggy": "slow",
    "buffering": "slow",
    "speed": "slow",
    "lights": "light",
    "led": "light",
    "leds": "light",
    "blinking": "light",
    "flashing": "light",
    "red": "light",
    "offline": "down",
    "outage": "down",
    "moving": "move",
    "relocating": "move",
    "relocate": "move",
    "house": "move",
    "address": "move",
}
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")


def keywords(text: str) -> set[str]:
    """The normalised keywords of a query or article: lower case, no stop words, synonyms folded."""
    words = set()
    for word in _WORD.findall(text.lower()):
        word = word.strip("'-")
        if not word or word in _STOPWORDS:
            continue
        words.add(_SYNONYMS.get(word, word))
        for part in word.split("-"):
            if part and part not in _STOPWORDS:
                words.add(_SYNONYMS.get(part, part))
    return words


def to_article(row: ArticleRow) -> Article:
    """The port record of an article row."""
    return Article(article_id=row.article_id, title=row.title, tags=tuple(row.tags), steps=tuple(row.steps))


class SqlSupport:
    """`agents.ports.Support` on the tenant's SQL store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def outage_for_zip(self, zip_code: str) -> Outage | None:
        """The active outage covering this ZIP code (the most specific prefix wins), if any."""
        zip_code = normalize_zip(zip_code)
        if not zip_code:
            return None
        async with self._store.read() as session:
            rows = (await session.execute(select(OutageRow).where(OutageRow.status != "resolved"))).scalars().all()
        matching = [row for row in rows if zip_code.startswith(row.zip_prefix)]
        if not matching:
            return None
        best = max(matching, key=lambda row: (len(row.zip_prefix), row.started_at))
        return Outage(
            outage_id=best.outage_id,
            zip_prefix=best.zip_prefix,
            description=best.description,
            started_at=self._store.local(best.started_at),
            eta=self._store.local(best.eta) if best.eta else None,
            status=best.status,  # type: ignore[arg-type]  # the column only ever holds the Literal's values
        )

    async def search_articles(self, query: str, limit: int = 3) -> list[Article]:
        """Articles ranked by keyword overlap with their tags (weight 3) and title (weight 2); no ML."""
        wanted = keywords(query)
        if not wanted or limit <= 0:
            return []
        async with self._store.read() as session:
            rows = (await session.execute(select(ArticleRow).order_by(ArticleRow.article_id))).scalars().all()
        scored = []
        for row in rows:
            tags = keywords(" ".join(row.tags))
            title = keywords(row.title)
            score = 3 * len(wanted & tags) + 2 * len(wanted & title)
            if score:
                scored.append((score, row))
        # Stable order for equal scores (the rows come sorted by id), so answers do not flicker between calls.
        scored.sort(key=lambda item: -item[0])
        return [to_article(row) for _, row in scored[:limit]]

    async def article(self, article_id: str) -> Article:
        """One article by id; raises NotFound when there is none."""
        async with self._store.read() as session:
            row = await session.get(ArticleRow, article_id)
        if row is None:
            raise NotFound("I couldn't find that help article.")
        return to_article(row)
