"""Graph checkpoints: the durable store (`open_checkpointer`), with each live call's latest kept in memory.

Every caller turn starts with LangGraph reading the call's latest checkpoint. From SQLite that is a hop
to aiosqlite's thread and back (about 1 ms at the median, several under load); from PostgreSQL, a
round trip. Yet the process that runs a call wrote that checkpoint itself at the end of the previous
turn. `LatestCheckpointCache` keeps what it wrote and answers the next read from memory:

- **Write-through.** Every write goes to the durable store first and is cached only once it is
  committed, so a crash loses nothing the store did not already have, and another process resuming
  the call (after a crash, or a reclaim) reads the store as before.
- **Only the latest checkpoint of a thread**, only for reads that ask for "the latest" (no
  `checkpoint_id`), and only at the top level (`checkpoint_ns` ""). History, listing, replays and
  subgraphs go to the store.
- **A copy per read.** LangGraph changes the checkpoint and metadata it loads in place, so the cache
  keeps them serialised (the store's own serde) and decodes them on each read, as the store would.
- **Writes between checkpoints** (`aput_writes`: a failed or interrupted step's pending writes) drop
  the thread from the cache; its next read goes to the store, which returns them.
- **One process owns a live call**, which is how calls run: a worker claims a call and runs it to the
  end. A process that does not run the call (the console) never writes through this cache. A call that
  starts or resumes in a process is forgotten first (`forget`, called by the session adapter), so a call
  that went to another worker and came back is read from the store, never from an older memory of it.
- **Read before the first turn.** A call's first turn would still start with a read from the store. The
  session adapter loads the call (`load`) as the call starts, while the caller hears the greeting, so
  the first turn starts from memory too. A thread the store has nothing of is remembered as new.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from orchestrator.config import Settings
from orchestrator.sql import switch_file_to_wal

__all__ = ["LatestCheckpointCache", "open_checkpointer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Latest:
    config: RunnableConfig
    parent_config: RunnableConfig | None
    checkpoint: tuple[str, bytes]
    metadata: tuple[str, bytes]


class LatestCheckpointCache(BaseCheckpointSaver[Any]):
    """A checkpoint saver that writes through to `store` and answers "latest checkpoint" reads from memory.

    Args:
        store: the durable saver (SQLite or PostgreSQL) every read and write falls back to.
        threads: how many threads' latest checkpoints to keep; the least recently used go first.
    """

    def __init__(self, store: BaseCheckpointSaver[Any], *, threads: int = 2048) -> None:
        super().__init__(serde=store.serde)
        self.store = store
        self.threads = threads
        self.hits = 0
        self.misses = 0
        # thread -> its latest checkpoint, or None: the store has none (a new call, see `load`)
        self._latest: OrderedDict[str, _Latest | None] = OrderedDict()
        # threads being loaded -> still unchanged since the load began (see `load`)
        self._loading: dict[str, bool] = {}

    @classmethod
    def _key(cls, config: RunnableConfig) -> str | None:
        """The thread whose latest top-level checkpoint `config` asks for, or None (not cacheable)."""
        configurable = config.get("configurable", {})
        if get_checkpoint_id(config) or configurable.get("checkpoint_ns", ""):
            return None
        return cls._thread(config)

    def _remember(self, saved: RunnableConfig, parent: RunnableConfig, checkpoint: Checkpoint, meta: Any) -> None:
        configurable = parent.get("configurable", {})
        thread, namespace = configurable.get("thread_id"), configurable.get("checkpoint_ns", "")
        if thread is None or namespace:
            return
        parent_id = configurable.get("checkpoint_id")
        parent_config: RunnableConfig | None = (
            {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": parent_id}}
            if parent_id
            else None
        )
        self._keep(str(thread), self._entry(saved, parent_config, checkpoint, meta))

    def _entry(
        self, config: RunnableConfig, parent_config: RunnableConfig | None, checkpoint: Checkpoint, meta: Any
    ) -> _Latest:
        return _Latest(
            config=config,
            parent_config=parent_config,
            checkpoint=self.serde.dumps_typed(checkpoint),
            metadata=self.serde.dumps_typed(dict(meta)),
        )

    def _keep(self, thread: str, entry: _Latest | None) -> None:
        self._changed(thread)
        self._latest[thread] = entry
        self._latest.move_to_end(thread)
        while len(self._latest) > self.threads:
            self._latest.popitem(last=False)

    async def load(self, thread_id: str) -> None:
        """Read a thread's latest checkpoint from the store into memory: its call starts or resumes here.

        What memory held of the thread is dropped first (the call may have run on another worker since).
        Called before the call's first turn, so that turn starts from memory like every later one. A thread
        the store has nothing of is remembered as new; one with pending writes is left to the store.
        """
        self.forget(thread_id)
        self._loading[thread_id] = True
        config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        self.misses += 1  # a read from the store, as the call starts rather than on its first turn
        try:
            found = await self.store.aget_tuple(config)
        finally:
            unchanged = self._loading.pop(thread_id, False)
        if not unchanged:
            return  # the thread was written (or dropped) meanwhile: what was read may be older
        if found is None:
            self._keep(thread_id, None)
        elif not found.pending_writes:
            self._keep(thread_id, self._entry(found.config, found.parent_config, found.checkpoint, found.metadata))

    def forget(self, thread_id: str) -> None:
        """Drop what memory holds of a thread: its next read goes to the store."""
        self._changed(thread_id)
        self._latest.pop(thread_id, None)

    def _changed(self, thread_id: str) -> None:
        if thread_id in self._loading:
            self._loading[thread_id] = False

    @staticmethod
    def _thread(config: RunnableConfig) -> str | None:
        thread = config.get("configurable", {}).get("thread_id")
        return str(thread) if thread is not None else None

    def _forget(self, config: RunnableConfig) -> None:
        if (thread := self._thread(config)) is not None:
            self.forget(thread)

    def _cached(self, config: RunnableConfig) -> tuple[bool, CheckpointTuple | None]:
        """(whether memory knows the answer, the answer): the thread's latest checkpoint, or None (a new thread)."""
        key = self._key(config)
        if key is None or key not in self._latest:
            return False, None
        self._latest.move_to_end(key)
        entry = self._latest[key]
        if entry is None:
            return True, None
        return True, CheckpointTuple(
            config=entry.config,
            checkpoint=self.serde.loads_typed(entry.checkpoint),
            metadata=self.serde.loads_typed(entry.metadata),
            parent_config=entry.parent_config,
            pending_writes=[],
        )

    # async API (what the graph uses)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        known, cached = self._cached(config)
        if known:
            self.hits += 1
            return cached
        self.misses += 1
        return await self.store.aget_tuple(config)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved = await self.store.aput(config, checkpoint, metadata, new_versions)
        try:
            self._remember(saved, config, checkpoint, metadata)
        except Exception:  # noqa: BLE001 - the store has the checkpoint; memory must never fail the turn
            self._forget(config)
            log.warning("checkpoint cache: could not keep %s; its next read goes to the store", self._thread(config))
        return saved

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._forget(config)
        await self.store.aput_writes(config, writes, task_id, task_path)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - the saver API's name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.store.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def adelete_thread(self, thread_id: str) -> None:
        self.forget(thread_id)
        await self.store.adelete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._latest.clear()  # which threads the runs belong to is the store's to know
        await self.store.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.forget(target_thread_id)
        await self.store.acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in thread_ids:
            self.forget(thread_id)
        await self.store.aprune(thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self.store.aget_delta_channel_history(config=config, channels=channels)

    # sync API: straight to the store; a write drops the thread from the cache

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.store.get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - the saver API's name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.store.list(config, filter=filter, before=before, limit=limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._forget(config)
        return self.store.put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._forget(config)
        self.store.put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self.forget(thread_id)
        self.store.delete_thread(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._latest.clear()
        self.store.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.forget(target_thread_id)
        self.store.copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for thread_id in thread_ids:
            self.forget(thread_id)
        self.store.prune(thread_ids, strategy=strategy)

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.store.get_next_version(current, channel)


async def open_checkpointer(settings: Settings, stack: AsyncExitStack) -> BaseCheckpointSaver[Any]:
    """Graph checkpoints live beside the call records: PostgreSQL in production, SQLite embedded."""
    url = settings.database_url
    if url and url.startswith(("postgres://", "postgresql")):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        conninfo = "postgresql://" + url.split("://", 1)[1]
        conninfo = conninfo.replace("postgresql+psycopg://", "postgresql://").replace(
            "postgresql+asyncpg://", "postgresql://"
        )
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=8,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        await pool.open()
        stack.push_async_callback(pool.close)
        saver: BaseCheckpointSaver[Any] = AsyncPostgresSaver(pool)
        await saver.setup()  # type: ignore[attr-defined]
        return saver
    path = (settings.data_dir / "checkpoints.db").resolve()
    # Several worker processes share the file: WAL lets readers and one writer proceed together. The
    # mode stays with the file, so the switch (which may have to wait out another process) is done once,
    # before the saver's connection opens.
    await asyncio.to_thread(switch_file_to_wal, str(path), 30)
    conn = await aiosqlite.connect(str(path), timeout=30)
    stack.push_async_callback(conn.close)
    # WAL + NORMAL: a commit survives a process crash (what resumption needs) without an fsync per
    # turn; a power loss may drop the last turns. Use PostgreSQL where that matters.
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA busy_timeout=30000")
    sqlite_saver = AsyncSqliteSaver(conn)
    await sqlite_saver.setup()
    return sqlite_saver
