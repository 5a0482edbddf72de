"""Redis URLs and clients: Sentinel URLs are read, a bad one is refused naming REDIS_URL; our clients answer in text."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool

from orchestrator.config import SettingsError, load_settings
from orchestrator.live import LiveFeed
from orchestrator.providers.phrase_cache import PhraseCache
from orchestrator.queue.call_queue import CallQueue
from orchestrator.redis_client import open_redis
from orchestrator.redis_url import SentinelTarget, parse_sentinel_url

pytestmark = pytest.mark.unit


def test_a_sentinel_url_names_its_sentinels_primary_and_database() -> None:
    target = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,sentinel-b,10.0.0.3:26380/mymaster/2")
    assert target == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26379), ("10.0.0.3", 26380)),
        service="mymaster",
        db=2,
        password="s@cret",
    )
    assert parse_sentinel_url("redis+sentinel://127.0.0.1:26379/mymaster").db == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://127.0.0.1:26379", "primary name"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/zero", "not a number"),
        ("redis+sentinel://127.0.0.1:2x/mymaster", "bad port"),
        ("redis+sentinel://,127.0.0.1:26379/mymaster", "no host"),
        ("redis+sentinel://a:1/m/0/extra", "primary name"),
        ("http://127.0.0.1:6379", "must start with"),
    ],
)
def test_a_bad_redis_url_is_refused_in_one_line_naming_the_variable(url: str, problem: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(redis_url=url)
    message = str(err.value)
    assert "REDIS_URL" in message
    assert problem in message
    assert "\n" not in message


async def test_a_sentinel_url_opens_a_client_that_asks_the_sentinels_for_the_primary() -> None:
    client = open_redis("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/3", max_connections=8)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.is_master
        assert pool.service_name == "mymaster"
        assert pool.connection_kwargs["db"] == 3
        assert pool.max_connections == 8
        assert [c.connection_pool.connection_kwargs["port"] for c in pool.sentinel_manager.sentinels] == [26379, 26380]
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/15", "redis+sentinel://127.0.0.1:26379/mymaster/3"], ids=["plain", "sentinel"]
)
async def test_our_clients_answer_in_text_and_the_phrase_cache_in_bytes(url: str) -> None:
    text, audio = open_redis(url, max_connections=4), PhraseCache.connect(url)
    try:
        assert text.get_encoder().decode_responses  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        assert not audio.get_encoder().decode_responses
    finally:
        await text.aclose()
        await audio.aclose()


@pytest.mark.parametrize("build", [lambda r: CallQueue(r), lambda r: LiveFeed(r)], ids=["queue", "live feed"])
async def test_a_client_that_answers_in_bytes_is_refused_in_one_line(build: Callable[[Redis], object]) -> None:
    client = Redis.from_url("redis://127.0.0.1:6379/15")  # redis-py's default: bytes
    try:
        with pytest.raises(ValueError, match="decode_responses=True") as err:
            build(client)
        assert "\n" not in str(err.value)
    finally:
        await client.aclose()
