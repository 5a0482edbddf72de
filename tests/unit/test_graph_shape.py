"""The graph's shape is an artifact: a change to the wiring shows up as a diff of this snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.graph import build_graph
from agents.specialists.registry import SPECIALISTS

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


def test_every_specialist_reply_passes_the_supervisors_review_before_it_is_spoken() -> None:
    graph = build_graph().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    for spec in SPECIALISTS:
        assert (spec.name, "review") in edges
        assert (spec.name, "speak") not in edges
        assert (spec.name, "__end__") not in edges
    assert {t for s, t in edges if s == "review"} == {"speak", "escalate"}
    assert {s for s, t in edges if t == "speak"} == {"review", "escalate", "respond"}
