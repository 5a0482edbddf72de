"""The leave-one-dataset-out report: its shape on a small slice, our own rows never tested on, bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--groups", "nonsense"), "unknown template group 'nonsense'"),
        (("--l2", "-1"), "--l2 >= 0"),
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
