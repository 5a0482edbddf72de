"""The graph's shape is an artifact: a change to the wiring shows up as a diff of this snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.channels.binop import BinaryOperatorAggregate

from agents.graph import _ADDED, _applied, _merged, build_graph
from agents.state import CallState, Intervention, Turn

pytestmark = pytest.mark.unit

SNAPSHOT = Path(__file__).with_name("snapshots") / "graph.mmd"


def test_graph_shape_matches_snapshot() -> None:
    drawn = build_graph().get_graph().draw_mermaid()
    if not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(drawn)
        pytest.fail("snapshot written; review and commit tests/unit/snapshots/graph.mmd")
    assert drawn == SNAPSHOT.read_text()


def test_every_specialist_can_reach_a_human() -> None:
    graph = build_graph().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    for node in ("supervise", "route", "scheduling", "billing", "support"):
        assert (node, "escalate") in edges
    assert ("escalate", "speak") in edges


def test_a_specialist_step_and_its_review_update_the_state_as_two_steps_would() -> None:
    # The lists LangGraph adds up are exactly the ones the in-step merge adds up.
    added = {name for name, channel in build_graph().channels.items() if isinstance(channel, BinaryOperatorAggregate)}
    assert added == _ADDED
    note = Intervention(turn=3, kind="warn", reason="llm_unavailable", detail="")
    correction = Intervention(turn=3, kind="correct_reply", reason="off_script", detail="")
    specialist = {"reply": "draft", "interventions": [note], "tool_events": []}
    review = {"reply": "corrected", "interventions": [correction]}
    assert _merged(specialist, review) == {"reply": "corrected", "interventions": [note, correction], "tool_events": []}
    state = CallState(transcript=[Turn(role="caller", agent="", text="hi")], interventions=[], reply="")
    applied = _applied(state, _merged(specialist, review))
    assert applied["interventions"] == [note, correction]
    assert applied["transcript"] == state["transcript"]  # untouched lists stay as they were
    assert applied["reply"] == "corrected"
