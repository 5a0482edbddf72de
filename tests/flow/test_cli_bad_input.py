"""Every command answers bad input with one clear line and the right exit code, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]


def _files(tmp: Path) -> dict[str, Path]:
    bad = tmp / "bad.jsonl"
    bad.write_text('{"text": "my bill", "label": "billing"}\nnot json\n')
    empty = tmp / "empty.jsonl"
    empty.write_text("\n")
    unknown = tmp / "unknown.jsonl"
    unknown.write_text('{"text": "hi", "label": "sales"}\n')
    broken = tmp / "broken-prompts"
    shutil.copytree(REPO / "prompts", broken)
    replies = broken / "replies.yaml"
    replies.write_text(replies.read_text().replace("{name}", "{nme}", 1))
    (tmp / "exists").mkdir()
    return {"bad": bad, "empty": empty, "unknown": unknown, "broken": broken, "exists": tmp / "exists"}


# (argv, extra environment, exit code, words the one line must contain)
CASES: dict[str, tuple[list[str], dict[str, str], int, list[str]]] = {
    "call-empty-turn": (["call", "--say", ""], {}, 2, ["--say", "empty"]),
    "call-audio-empty-turn": (["call", "--audio", "--say", ""], {}, 2, ["--say", "empty"]),
    "route-empty": (["route", " "], {}, 2, ["empty"]),
    "route-bad-threshold": (["route", "hello"], {"SWITCHBOARD_ROUTER_THRESHOLD": "2"}, 2, ["ROUTER_THRESHOLD"]),
    "redis-url-not-a-url": (["dlq", "list"], {"REDIS_URL": "notaurl"}, 2, ["REDIS_URL", "redis://"]),
    "simulate-redis-url-not-a-url": (["simulate", "--calls", "1"], {"REDIS_URL": "notaurl"}, 2, ["REDIS_URL"]),
    "redis-down": (["dlq", "list"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, 1, ["cannot reach Redis"]),
    "dlq-show-not-an-id": (["dlq", "show", "nosuch"], {"REDIS_URL": REDIS_TEST_URL}, 2, ["not a dead-letter id"]),
    "dlq-replay-missing": (["dlq", "replay", "1-0"], {"REDIS_URL": REDIS_TEST_URL}, 1, ["no dead letter 1-0"]),
    "eval-router-not-json": (["eval", "router", "--data", "{bad}"], {}, 2, ["bad.jsonl:2", "not valid JSON"]),
    "eval-router-empty": (["eval", "router", "--data", "{empty}"], {}, 2, ["no examples"]),
    "eval-router-unknown-label": (["eval", "router", "--data", "{unknown}"], {}, 2, ["unknown label 'sales'"]),
    "eval-run-missing-suite": (["eval", "run", "nosuch.yaml"], {}, 2, ["nosuch.yaml", "no such file"]),
    "eval-run-broken-template": (
        ["eval", "run", "--prompts", "{broken}", "evals/suites/smoke.yaml"],
        {},
        2,
        ["replies.yaml:", "{nme}", "{name}"],
    ),
    "simulate-negative-rate": (["simulate", "--rate", "-5"], {}, 2, ["--rate"]),
    "prompts-new-existing": (["prompts", "new", "{exists}"], {}, 2, ["already exists"]),
    "option-out-of-range": (["eval", "run", "--repeat", "0", "x.yaml"], {}, 2, ["--repeat", "greater than"]),
    "option-not-a-number": (["simulate", "--calls", "abc"], {}, 2, ["--calls", "integer"]),
    "missing-argument": (["route"], {}, 2, ["Missing argument"]),
    "unknown-command": (["nosuchcmd"], {}, 2, ["No such command"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_one_clear_line(case: str, tmp_path: Path) -> None:
    argv, extra, code, words = CASES[case]
    files = _files(tmp_path)
    args = [a.format(**{k: str(v) for k, v in files.items()}) if a.startswith("{") else a for a in argv]
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "80", **extra}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode == code, done.stderr
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
