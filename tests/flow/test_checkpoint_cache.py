"""The latest checkpoint of a call is answered from memory, and is always what the durable store holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agents.graph import build_graph
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall
from orchestrator.store.checkpoints import LatestCheckpointCache

pytestmark = pytest.mark.flow

CALLER = "+15550100002"


def thread(call_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": call_id}}


async def test_turns_read_the_latest_checkpoint_from_memory_and_it_matches_the_store(services: Services) -> None:
    cache = services.checkpointer
    assert isinstance(cache, LatestCheckpointCache)
    call = TextCall(services, call_id="call-cache-1", caller_id=CALLER)
    try:
        hits, misses = cache.hits, cache.misses
        await call.say("How much do I owe?")
        # A new call: the store is asked once, as the call starts, and says it has nothing; the first
        # turn then starts from memory, as every later one does.
        assert cache.misses == misses + 1
        assert cache.hits >= hits + 1
        await call.say("10453")
        await call.say("yes")
        assert cache.misses == misses + 1
        assert cache.hits >= hits + 3
    finally:
        await call.aclose()
    cached = await cache.aget_tuple(thread("call-cache-1"))
    stored = await cache.store.aget_tuple(thread("call-cache-1"))
    assert cached is not None
    assert stored is not None
    assert cached.config == stored.config
    assert cached.parent_config == stored.parent_config
    assert cached.checkpoint == stored.checkpoint
    assert cached.metadata == stored.metadata
    assert cached.pending_writes == stored.pending_writes == []
    assert [t["text"] for t in cached.checkpoint["channel_values"]["transcript"] if t["role"] == "caller"] == [
        "How much do I owe?",
        "10453",
        "yes",
    ]


async def test_a_read_is_a_copy_the_graph_may_change(services: Services) -> None:
    cache = services.checkpointer
    call = TextCall(services, call_id="call-cache-2", caller_id=CALLER)
    try:
        await call.say("How much do I owe?")
    finally:
        await call.aclose()
    first = await cache.aget_tuple(thread("call-cache-2"))
    assert first is not None
    first.checkpoint["channel_values"]["transcript"].append({"role": "caller", "agent": "", "text": "tampered"})
    first.checkpoint["channel_versions"]["transcript"] = "tampered"
    first.metadata["step"] = 999
    second = await cache.aget_tuple(thread("call-cache-2"))
    assert second is not None
    assert "tampered" not in str(second.checkpoint)
    assert second.metadata["step"] != 999


async def test_pending_writes_and_other_checkpoints_are_read_from_the_store(services: Services) -> None:
    cache = services.checkpointer
    assert isinstance(cache, LatestCheckpointCache)
    call = TextCall(services, call_id="call-cache-3", caller_id=CALLER)
    try:
        await call.say("How much do I owe?")
        await call.say("10453")
    finally:
        await call.aclose()
    latest = await cache.aget_tuple(thread("call-cache-3"))
    assert latest is not None
    assert latest.parent_config is not None
    # An exact checkpoint (here the previous turn's) is not the cache's to answer.
    misses = cache.misses
    previous = await cache.aget_tuple(latest.parent_config)
    assert cache.misses == misses + 1
    assert previous is not None
    assert previous.checkpoint["id"] == latest.parent_config["configurable"]["checkpoint_id"]
    # Writes put after the latest checkpoint (a failed step's) drop it from memory; the store returns them.
    await cache.aput_writes(latest.config, [("utterance", "pending")], task_id="task-1")
    misses = cache.misses
    reread = await cache.aget_tuple(thread("call-cache-3"))
    assert cache.misses == misses + 1
    assert reread is not None
    assert [(task, channel, value) for task, channel, value in reread.pending_writes or []] == [
        ("task-1", "utterance", "pending")
    ]


async def test_another_process_resumes_from_the_store_and_deleting_a_thread_forgets_it(tmp_path: Path) -> None:
    path = str(tmp_path / "checkpoints.db")
    async with aiosqlite.connect(path) as one, aiosqlite.connect(path) as two:
        first = LatestCheckpointCache(AsyncSqliteSaver(one))
        await first.store.setup()  # type: ignore[attr-defined]
        second = LatestCheckpointCache(AsyncSqliteSaver(two))
        graph_one, graph_two = build_graph(first), build_graph(second)
        # One "process" writes; the other has nothing in memory and reads what was written from the store.
        config: Any = thread("call-cache-4")
        await graph_one.aupdate_state(config, {"utterance": "hello", "turn": 1})
        state = await graph_two.aget_state(config)
        assert state.values["utterance"] == "hello"
        assert second.misses >= 1
        assert second.hits == 0
        await first.adelete_thread("call-cache-4")
        assert await first.aget_tuple(config) is None


async def test_a_call_that_comes_back_to_a_process_is_read_from_the_store(services: Services, tmp_path: Path) -> None:
    cache = services.checkpointer
    assert isinstance(cache, LatestCheckpointCache)
    first = TextCall(services, call_id="call-cache-5", caller_id=CALLER)
    try:
        await first.say("How much do I owe?")
    finally:
        await first.aclose()
    # Meanwhile the call went on in another worker process, which wrote its own checkpoint to the store.
    path = services.settings.data_dir / "checkpoints.db"
    async with aiosqlite.connect(str(path.resolve())) as conn:
        elsewhere = build_graph(AsyncSqliteSaver(conn))
        await elsewhere.aupdate_state(thread("call-cache-5"), {"utterance": "said on another worker", "turn": 7})
    # Back in this process, the call's session reads the store, not this process's older memory.
    again = TextCall(services, call_id="call-cache-5", caller_id=CALLER)
    try:
        state = await again.state()
    finally:
        await again.aclose()
    assert state["utterance"] == "said on another worker"
    assert state["turn"] == 7


async def test_memory_keeps_only_the_most_recently_used_threads(tmp_path: Path) -> None:
    async with aiosqlite.connect(str(tmp_path / "checkpoints.db")) as conn:
        cache = LatestCheckpointCache(AsyncSqliteSaver(conn), threads=2)
        await cache.store.setup()  # type: ignore[attr-defined]
        graph = build_graph(cache)
        for call_id in ("a", "b", "c"):
            await graph.aupdate_state(thread(call_id), {"utterance": call_id})
        hits, misses = cache.hits, cache.misses
        assert (await graph.aget_state(thread("c"))).values["utterance"] == "c"
        assert (await graph.aget_state(thread("b"))).values["utterance"] == "b"
        assert (cache.hits, cache.misses) == (hits + 2, misses)
        assert (await graph.aget_state(thread("a"))).values["utterance"] == "a"  # evicted: read from the store
        assert cache.misses == misses + 1


async def test_a_checkpoint_memory_cannot_keep_is_still_stored_and_read_back(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = services.checkpointer
    assert isinstance(cache, LatestCheckpointCache)

    def unkeepable(*_args: Any) -> None:
        raise TypeError("cannot serialise this")

    monkeypatch.setattr(cache, "_remember", unkeepable)
    call = TextCall(services, call_id="call-cache-6", caller_id=CALLER)
    try:
        await call.say("How much do I owe?")  # the turn goes on: the store has its checkpoint
        misses = cache.misses
        state = await call.state()
    finally:
        await call.aclose()
    assert cache.misses == misses + 1
    assert state["turn"] == 1


async def test_a_call_that_resumes_here_is_loaded_before_its_first_turn(services: Services) -> None:
    cache = services.checkpointer
    assert isinstance(cache, LatestCheckpointCache)
    path = services.settings.data_dir / "checkpoints.db"
    async with aiosqlite.connect(str(path.resolve())) as conn:  # the call began on another worker
        elsewhere = build_graph(AsyncSqliteSaver(conn))
        # As a whole turn leaves it: written by the turn's last node, nothing left to run.
        await elsewhere.aupdate_state(
            thread("call-cache-7"), {"utterance": "said on another worker", "turn": 3}, as_node="speak"
        )
    call = TextCall(services, call_id="call-cache-7", caller_id=CALLER)
    try:
        await call.start()  # loads the call from the store
        hits, misses = cache.hits, cache.misses
        state = await call.state()
        assert (cache.hits, cache.misses) == (hits + 1, misses)
        assert state["turn"] == 3
        stored = await cache.store.aget_tuple(thread("call-cache-7"))
        cached = await cache.aget_tuple(thread("call-cache-7"))
        assert stored is not None
        assert cached is not None
        assert (cached.config, cached.parent_config, cached.checkpoint, cached.metadata) == (
            stored.config,
            stored.parent_config,
            stored.checkpoint,
            stored.metadata,
        )
        await call.say("How much do I owe?")
        assert cache.misses == misses
    finally:
        await call.aclose()
    assert (await call.state())["turn"] == 4


class _SlowStore(AsyncSqliteSaver):
    """A store whose reads wait until the test lets them through."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self.let_through = asyncio.Event()
        self.held = asyncio.Event()  # a read has its answer and waits to be let through

    async def aget_tuple(self, config: RunnableConfig) -> Any:
        found = await super().aget_tuple(config)
        if not self.let_through.is_set():
            self.held.set()
        await self.let_through.wait()
        return found


async def test_a_turn_written_while_the_call_loads_is_not_overwritten_by_the_older_read(tmp_path: Path) -> None:
    async with aiosqlite.connect(str(tmp_path / "checkpoints.db")) as conn:
        store = _SlowStore(conn)
        await store.setup()
        cache = LatestCheckpointCache(store)
        graph = build_graph(cache)
        store.let_through.set()
        await graph.aupdate_state(thread("call-cache-8"), {"utterance": "first", "turn": 1})
        cache.forget("call-cache-8")
        stale = await store.aget_tuple(thread("call-cache-8"))  # what the load below will read
        assert stale is not None
        store.let_through.clear()
        loading = asyncio.create_task(cache.load("call-cache-8"))
        await asyncio.wait_for(store.held.wait(), 30)
        assert not loading.done()
        # A turn writes while the load's read is still on its way back.
        later = stale.checkpoint.copy()
        later["id"] = "later"
        await cache.aput(stale.config, later, stale.metadata, {})
        store.let_through.set()
        await loading
        latest = await cache.aget_tuple(thread("call-cache-8"))
        assert latest is not None
        assert latest.checkpoint["id"] == "later"


async def test_a_call_with_pending_writes_is_left_to_the_store_when_loaded(tmp_path: Path) -> None:
    async with aiosqlite.connect(str(tmp_path / "checkpoints.db")) as conn:
        cache = LatestCheckpointCache(AsyncSqliteSaver(conn))
        await cache.store.setup()  # type: ignore[attr-defined]
        graph = build_graph(cache)
        await graph.aupdate_state(thread("call-cache-9"), {"utterance": "first"})
        latest = await cache.aget_tuple(thread("call-cache-9"))
        assert latest is not None
        await cache.aput_writes(latest.config, [("utterance", "pending")], task_id="task-1")
        await cache.load("call-cache-9")
        misses = cache.misses
        reread = await cache.aget_tuple(thread("call-cache-9"))
        assert cache.misses == misses + 1
        assert reread is not None
        assert [channel for _task, channel, _value in reread.pending_writes or []] == ["utterance"]
