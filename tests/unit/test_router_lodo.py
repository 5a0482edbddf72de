"""The leave-one-dataset-out report: its shape on a small slice, our own rows never tested on, bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agents.ports import INTENTS
from evals.router import lodo
from evals.router.augment import GROUPS, augmented_rows, expand
from evals.router.split import Row

pytestmark = pytest.mark.unit

SLICE = {
    "alpha": {
        "billing": ["what do I owe this month", "my bill is too high", "when is my payment due"],
        "support": ["my internet keeps dropping", "the router light is red", "I can't log in to my account"],
        "escalation": ["get me a manager", "I want to complain", "put me through to a person"],
    },
    "beta": {
        "billing": ["why was I charged twice", "I want a refund on my bill", "how much is my balance"],
        "scheduling": ["book a technician for Friday", "move my install to Monday", "cancel the engineer visit"],
        "out_of_scope": ["what's the weather tomorrow", "play some jazz", "order a pizza"],
    },
    "gamma": {
        "support": ["the wifi is down again", "is there an outage near me", "reset my password please"],
        "scheduling": ["when is the technician coming", "reschedule my appointment", "can someone come out Tuesday"],
        "out_of_scope": ["tell me a joke", "set an alarm for seven", "who won the game last night"],
    },
}
EXAMPLES = [
    {"text": "agent", "label": "escalation"},
    {"text": "my bill", "label": "billing"},
    {"text": "internet is down", "label": "support"},
    {"text": "book a visit", "label": "scheduling"},
    {"text": "what time is it in Paris", "label": "out_of_scope"},
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("lodo")
    data, examples = folder / "slice.jsonl", folder / "examples.jsonl"
    lines = [
        {"text": text, "label": label, "source": f"{dataset}:train:{label}"}
        for dataset, labels in SLICE.items()
        for label, texts in labels.items()
        for text in texts
    ]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    examples.write_text("".join(json.dumps(line) + "\n" for line in EXAMPLES))
    return data, examples, folder / "embeddings.npz"


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = lodo.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_report_has_every_left_out_dataset_overall_and_the_split(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, examples, cache = files
    common = ("--data", data, "--examples", examples, "--cache", cache, "--iterations", "60")
    code, out, err = run(capsys, *common, "--groups", "one_word_complaint", "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)

    assert list(report["datasets"]) == ["alpha", "beta", "gamma"]
    for dataset, labels in SLICE.items():
        fold = report["datasets"][dataset]
        assert fold["n"] == sum(len(texts) for texts in labels.values())
        assert set(fold["recall"]) == set(labels)
        assert 0.0 <= fold["macro_f1"] <= 1.0
        assert fold["temperature"] > 0
    overall = report["overall"]
    assert overall["n"] == sum(len(t) for labels in SLICE.values() for t in labels.values())
    assert set(overall["recall"]) == set(INTENTS)
    for key in ("macro_f1", "accuracy", "ece", "confident_errors", "coverage", "accuracy_above", "threshold"):
        assert key in overall
    assert set(report["thresholds"]) == {f"{t:g}" for t in lodo.THRESHOLDS}
    assert report["calibration"]["temperature"] > 0
    assert report["in_distribution"]["n"] > 0
    assert report["config"]["templates"] == ["one_word_complaint"]
    assert (report["config"]["neighbours"], report["config"]["neighbour_share"]) == (10, 0.3)
    assert report["config"]["vote_weights"] == "flat"
    assert cache.exists()

    # The table form names every fold, then the pooled line and the in-distribution split.
    code, table, _ = run(capsys, *common, "--groups", "none")
    assert code == 0
    names = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert names == ["left out", "alpha", "beta", "gamma", "**all (pooled)**", "in-distribution split"]


def test_own_rows_train_every_fold_and_a_shared_text_is_not_trained_on_where_it_is_tested() -> None:
    dev = [
        Row("get me a manager", "escalation", "alpha:train:x"),
        Row("what do I owe", "billing", "alpha:train:x"),
        Row("Get me  a manager", "escalation", "beta:train:x"),
        Row("play some jazz", "out_of_scope", "beta:train:x"),
    ]
    own = [Row("agent", "escalation", "northwind:handwritten")]
    alpha_train, alpha_test = lodo.fold_rows(dev, own, "alpha")
    beta_train, beta_test = lodo.fold_rows(dev, own, "beta")

    assert [r.text for r in alpha_test] == ["get me a manager", "what do I owe"]
    assert [r.text for r in beta_test] == ["Get me  a manager", "play some jazz"]
    # Our own rows train every fold and are never tested on.
    assert own[0] in alpha_train
    assert own[0] in beta_train
    # The same words from another source are left out of training while their twin is being tested.
    assert [r.text for r in alpha_train] == ["play some jazz", "agent"]
    assert [r.text for r in beta_train] == ["what do I owe", "agent"]


def test_templates_are_distinct_and_labelled() -> None:
    rows = augmented_rows()
    assert len({r.text for r in rows}) == len(rows)
    assert {r.label for r in rows} <= set(INTENTS)
    for name, group in GROUPS.items():
        assert expand(group), name
        assert all("{" not in text for text in expand(group)), name


def test_the_support_label_weighs_its_factor_and_keeps_its_rows_proportions() -> None:
    rows = [
        Row("my bill", "billing", "alpha:train:x"),
        Row("what do I owe", "billing", "beta:train:x"),
        Row("the wifi is down", "support", "alpha:train:x"),
        Row("reset my password", "support", "alpha:train:x"),
        Row("my email stopped working", "support", "beta:train:x"),
        Row("agent", "escalation", "northwind:handwritten"),
    ]
    support = [r.label == "support" for r in rows]
    even = lodo.sample_weights(rows, "label", written_weight=4.0)
    doubled = lodo.sample_weights(rows, "label", written_weight=4.0, support_weight=2.0)

    def total(weights: npt.NDArray[np.float64], label: str) -> float:
        return float(weights[[r.label == label for r in rows]].sum())

    assert total(even, "support") == pytest.approx(total(even, "billing"))
    assert total(doubled, "support") == pytest.approx(2 * total(doubled, "billing"))
    assert total(doubled, "billing") == pytest.approx(total(doubled, "escalation"))
    # Within the label each row keeps its share.
    assert [w for w, s in zip(doubled, support, strict=True) if s] == pytest.approx(
        [2 * w for w, s in zip(even, support, strict=True) if s]
    )
    assert lodo.Config().support_weight == 2.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--groups", "nonsense"), "unknown template group 'nonsense'"),
        (("--l2", "-1"), "--l2 >= 0"),
        (("--support-weight", "0"), "--support-weight > 0"),
        (("--neighbour-share", "1.5"), "--neighbour-share and --threshold within 0-1"),
        (("--neighbours", "0"), "--neighbours >= 1"),
        (("--neighbour-scale", "0"), "--neighbour-scale > 0"),
        (("--regression", "/nonexistent/regression.jsonl"), "No such file"),
        (("--limit", "0"), "--limit >= 1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    data, examples, cache = files
    code, out, err = run(capsys, "--data", data, "--examples", examples, "--cache", cache, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_one_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"text": "my bill", "label": "billing", "source": "alpha:train:x"}) + "\n")
    code, out, err = run(capsys, "--data", data, "--cache", tmp_path / "c.npz")
    assert code == 2
    assert "at least two source datasets" in err
    assert len(err.strip().splitlines()) == 1


def test_share_alike_sources_train_the_head_but_never_vote() -> None:
    rows = [
        Row("book a viewing", "scheduling", "sgd:train:Homes_1.ScheduleVisit"),
        Row("get me a human", "escalation", "bitext:train:contact_human_agent"),
        Row("my card won't work", "support", "banking77:train:card_not_working"),
        Row("agent", "escalation", "northwind:handwritten"),
    ]
    assert [r.text for r in lodo.voters(rows, lodo.Config())] == ["my card won't work", "agent"]
    assert lodo.voters(rows, lodo.Config(non_voters=())) == rows


def test_the_regression_turns_are_reported_and_one_read_wrong_makes_a_candidate_ineligible(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data, examples, cache = files
    turns = tmp_path / "regression.jsonl"
    # A pizza order labelled billing: no head trained on the slice reads it so, so no candidate is eligible.
    lines = [
        {"text": "I want a refund on my bill", "label": "billing", "kind": "request", "from": "a test"},
        {"text": "order me a large pizza", "label": "billing", "kind": "request", "from": "a test"},
    ]
    turns.write_text("".join(json.dumps(line) + "\n" for line in lines))
    common = ("--data", data, "--examples", examples, "--cache", cache, "--iterations", "60", "--regression", turns)
    code, out, err = run(capsys, *common, "--json")
    assert (code, err) == (0, "")
    reg = json.loads(out)["regression"]
    assert reg["n"] == 2
    assert reg["eligible"] is False
    assert [(r["text"], r["label"]) for r in reg["wrong"]] == [("order me a large pizza", "billing")]
    assert reg["wrong"][0]["read"] != "billing"
    assert reg["margin"] == lodo.REGRESSION_MARGIN

    code, table, _ = run(capsys, *common)
    assert "regression turns: 2, 1 wrong" in table
    assert "NOT eligible" in table


def test_the_grid_chooses_only_among_eligible_candidates(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data, examples, cache = files
    turns = tmp_path / "regression.jsonl"
    line = {"text": "order me a large pizza", "label": "billing", "kind": "request", "from": "a test"}
    turns.write_text(json.dumps(line) + "\n")
    common = ("--data", data, "--examples", examples, "--cache", cache, "--iterations", "10", "--regression", turns)
    code, out, _ = run(capsys, *common, "--grid", "--json")
    assert code == 0
    lines = [json.loads(text) for text in out.splitlines()]
    assert len(lines) > 10
    assert all(entry["eligible"] is False for entry in lines[:-1])
    # Whatever its LODO score, a candidate that misreads one of our own turns is not chosen.
    assert lines[-1] == {"chosen": None, "macro_f1": None}


def test_a_training_row_with_a_regression_turns_words_is_left_out() -> None:
    turns = [Row("What's my balance?", "billing", "")]
    rows = [Row("what's my  balance", "billing", "northwind:handwritten"), Row("my bill", "billing", "x")]
    assert [r.text for r in lodo.without_turns(rows, turns)] == ["my bill"]


def test_among_eligible_candidates_equal_on_lodo_the_widest_margin_wins() -> None:
    a, b, c = lodo.Config(l2=1e-4), lodo.Config(l2=1e-3), lodo.Config(l2=1e-2)
    assert lodo.choose([]) is None
    # b is 0.001 under a on LODO (noise) but reads our turns with a wider margin; c is clearly worse on LODO.
    assert lodo.choose([(0.934, 0.66, a), (0.933, 0.72, b), (0.920, 0.90, c)]) == (0.933, 0.72, b)
    assert lodo.choose([(0.940, 0.66, a), (0.933, 0.72, b)]) == (0.940, 0.66, a)
