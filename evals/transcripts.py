"""Transcripts in reports: each trial's turns, and two versions' replies side by side with word-level differences."""

from __future__ import annotations

import difflib
import html
import re
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from evals.runner import TrialResult

Op = Literal["equal", "delete", "insert"]
Kind = Literal["regression", "improvement", "changed", "same"]
SHOW = ("regressions", "changes", "all", "none")
_TOKEN = re.compile(r"\S+\s*")


def transcript(t: TrialResult) -> list[dict[str, Any]]:
    """The trial's turns as reports carry them: caller, agent, agent_name, latency_ms and the reply rules broken."""
    broken: dict[int, list[str]] = {}
    for f in t.findings:
        broken.setdefault(int(f["turn"]), []).append(str(f["rule"]))
    return [
        {
            "caller": turn["caller"],
            "agent": turn["agent"],
            "agent_name": turn["agent_name"],
            "latency_ms": round(float(turn["latency_ms"]), 1),
            "reply_rules_broken": broken.get(i, []),
        }
        for i, turn in enumerate(t.turns)
    ]


def word_diff(base: str, candidate: str) -> list[tuple[Op, str]]:
    """Word-level differences from `base` to `candidate`: equal, delete (base only) and insert (candidate only) runs."""
    a, b = _TOKEN.findall(base), _TOKEN.findall(candidate)
    ops: list[tuple[Op, str]] = []
    matcher = difflib.SequenceMatcher(None, [w.strip() for w in a], [w.strip() for w in b], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            ops.append(("equal", "".join(b[j1:j2])))
            continue
        if i2 > i1:
            ops.append(("delete", "".join(a[i1:i2])))
        if j2 > j1:
            ops.append(("insert", "".join(b[j1:j2])))
    return ops


def _kind(tb: TrialResult, tc: TrialResult, changed: bool) -> Kind:
    new_rules = {f["rule"] for f in tc.findings} - {f["rule"] for f in tb.findings}
    if (tb.passed and not tc.passed) or new_rules:
        return "regression"
    if tc.passed and not tb.passed:
        return "improvement"
    return "changed" if changed else "same"


def side_by_side(base: list[TrialResult], candidate: list[TrialResult]) -> list[dict[str, Any]]:
    """Every trial of both runs, turn by turn: the caller's words, each version's reply and their word diff.

    Each entry: suite, scenario, trial, kind (regression, improvement, changed, same), each side's status
    and why it failed, and `turns` (caller, base, candidate, agents, changed, diff, rules broken on each side).
    `caller` is the caller's words, or {base, candidate} when a simulated caller said different things;
    a call that ran longer on one side has turns whose reply on the other side is None.
    """
    out = []
    for tb, tc in zip(base, candidate, strict=True):
        sb, sc = transcript(tb), transcript(tc)
        turns = []
        for i in range(max(len(sb), len(sc))):
            b = sb[i] if i < len(sb) else None
            c = sc[i] if i < len(sc) else None
            rb, rc = (b or {}).get("agent", ""), (c or {}).get("agent", "")
            cb, cc = (b or {}).get("caller", ""), (c or {}).get("caller", "")
            turns.append(
                {
                    "turn": i + 1,
                    "caller": cc if cb == cc else {"base": cb, "candidate": cc},
                    "base": rb if b else None,
                    "candidate": rc if c else None,
                    "base_agent": (b or {}).get("agent_name"),
                    "candidate_agent": (c or {}).get("agent_name"),
                    "changed": b is None or c is None or rb != rc or cb != cc,
                    "diff": word_diff(rb, rc),
                    "base_rules_broken": (b or {}).get("reply_rules_broken", []),
                    "candidate_rules_broken": (c or {}).get("reply_rules_broken", []),
                }
            )
        changed = any(t["changed"] for t in turns) or tb.outcome != tc.outcome
        out.append(
            {
                "suite": tb.suite,
                "scenario": tb.scenario,
                "trial": tb.trial,
                "kind": _kind(tb, tc, changed),
                "base_status": tb.status,
                "candidate_status": tc.status,
                "base_outcome": tb.outcome,
                "candidate_outcome": tc.outcome,
                "base_why": tb.why if not tb.passed else "",
                "candidate_why": tc.why if not tc.passed else "",
                "turns": turns,
            }
        )
    return out


def shown(rows: list[dict[str, Any]], show: str) -> list[dict[str, Any]]:
    """The rows a filter keeps: regressions; changes (regressions, improvements and changed replies); all; none."""
    keep = {
        "regressions": {"regression"},
        "changes": {"regression", "improvement", "changed"},
        "all": {"regression", "improvement", "changed", "same"},
        "none": set(),
    }[show]
    return [r for r in rows if r["kind"] in keep]


# Terminal --------------------------------------------------------------------------------------------------------

_KIND_STYLE = {"regression": "bold red", "improvement": "green", "changed": "yellow", "same": "dim"}


def _caller(turn: dict[str, Any]) -> str:
    c = turn["caller"]
    return c if isinstance(c, str) else f"{c['base']} | {c['candidate']}"


def _side(turn: dict[str, Any], side: Literal["base", "candidate"]) -> Text:
    if turn[side] is None:
        return Text("(no turn)", style="dim")
    hidden: Op = "insert" if side == "base" else "delete"
    mark: Op = "delete" if side == "base" else "insert"
    style = "red strike" if side == "base" else "bold green"
    text = Text()
    for op, words in turn["diff"]:
        if op == hidden:
            continue
        text.append(words, style=style if op == mark else "")
    for rule in turn[f"{side}_rules_broken"]:
        text.append(f" [{rule}]", style="bold red")
    return text


def print_side_by_side(rows: list[dict[str, Any]], console: Console, show: str = "changes") -> None:
    """The trials a filter keeps, each as a table of changed turns: base words struck out, candidate words added."""
    picked = shown(rows, show)
    if show != "none":
        console.print(f"[bold]Replies side by side[/] ({show}: {len(picked)} of {len(rows)} trials)")
    for r in picked:
        head = (
            f"[{_KIND_STYLE[r['kind']]}]{r['kind']}[/] {r['suite']}/{r['scenario']}[{r['trial']}]: "
            f"base {r['base_status']} ({r['base_outcome']}), "
            f"candidate {r['candidate_status']} ({r['candidate_outcome']})"
        )
        t = Table(title=head, title_justify="left", show_lines=True, expand=True)
        t.add_column("#", width=3)
        t.add_column("caller", ratio=1)
        t.add_column("base", ratio=2)
        t.add_column("candidate", ratio=2)
        turns = r["turns"] if show == "all" else [x for x in r["turns"] if x["changed"] or x["candidate_rules_broken"]]
        for turn in turns:
            t.add_row(str(turn["turn"]), _caller(turn), _side(turn, "base"), _side(turn, "candidate"))
        if len(turns) < len(r["turns"]):
            t.caption = f"{len(r['turns']) - len(turns)} unchanged turn(s) not shown"
        console.print(t)
        if r["candidate_why"]:
            console.print(Text(f"candidate failed: {r['candidate_why']}", style="red"))


# HTML ------------------------------------------------------------------------------------------------------------

CSS = """
.matrix details{border:1px solid #ddd;border-left:4px solid #ddd;margin:.5rem 0;padding:.3rem .6rem;background:none}
.matrix details.regression{border-left-color:#c0392b}.matrix details.improvement{border-left-color:#18794e}
.matrix details.changed{border-left-color:#d69e2e}
.matrix summary{cursor:pointer}.matrix table{width:100%;table-layout:fixed}
.matrix td{vertical-align:top}.matrix col.n{width:2.5rem}.matrix col.c{width:22%}
tr.same td{color:#888}del{background:#fbd5d5;color:#9b1c1c}ins{background:#d2f4dd;color:#14532d;text-decoration:none}
.rule{display:inline-block;background:#c0392b;color:#fff;border-radius:3px;padding:0 .3rem;margin-left:.3rem;
font-size:.75rem}.kind{font-weight:600}.kind.regression{color:#c0392b}.kind.improvement{color:#18794e}
.kind.changed{color:#b7791f}.kind.same{color:#888}
.filters label{margin-right:1rem}
#show-reg:checked~.matrix details:not(.regression){display:none}
#show-chg:checked~.matrix details.same{display:none}
.transcript td{vertical-align:top}
"""


def _html_side(turn: dict[str, Any], side: Literal["base", "candidate"]) -> str:
    if turn[side] is None:
        return "<td><em>(no turn)</em></td>"
    hidden: Op = "insert" if side == "base" else "delete"
    mark: Op = "delete" if side == "base" else "insert"
    tag = "del" if side == "base" else "ins"
    parts = []
    for op, words in turn["diff"]:
        if op == hidden:
            continue
        parts.append(f"<{tag}>{html.escape(words)}</{tag}>" if op == mark else html.escape(words))
    parts += [f"<span class='rule'>{html.escape(rule)}</span>" for rule in turn[f"{side}_rules_broken"]]
    return f"<td>{''.join(parts)}</td>"


def side_by_side_html(rows: list[dict[str, Any]]) -> str:
    """The matrix: every trial, regressions and changes open, filterable (CSS only) to regressions or changes."""
    counts = {k: sum(r["kind"] == k for r in rows) for k in _KIND_STYLE}
    filters = (
        "<input type='radio' name='show' id='show-all'><label for='show-all'>all</label>"
        "<input type='radio' name='show' id='show-chg' checked><label for='show-chg'>changes</label>"
        "<input type='radio' name='show' id='show-reg'><label for='show-reg'>regressions</label>"
        f"<p class='filters'>{counts['regression']} regressed, {counts['improvement']} improved, "
        f"{counts['changed']} changed wording, {counts['same']} the same.</p>"
    )
    blocks = []
    for r in rows:
        trs = []
        for turn in r["turns"]:
            cls = "changed" if turn["changed"] or turn["candidate_rules_broken"] else "same"
            caller = html.escape(_caller(turn))
            trs.append(
                f"<tr class='{cls}'><td>{turn['turn']}</td><td>{caller}</td>"
                f"{_html_side(turn, 'base')}{_html_side(turn, 'candidate')}</tr>"
            )
        why = f"<p class='failed'>candidate failed: {html.escape(r['candidate_why'])}</p>" if r["candidate_why"] else ""
        opened = " open" if r["kind"] in {"regression", "improvement", "changed"} else ""
        blocks.append(
            f"<details class='{r['kind']}'{opened}><summary><span class='kind {r['kind']}'>{r['kind']}</span> "
            f"{html.escape(r['suite'])}/{html.escape(r['scenario'])}[{r['trial']}]: base "
            f"<span class='{r['base_status']}'>{r['base_status']}</span> ({html.escape(r['base_outcome'])}), candidate "
            f"<span class='{r['candidate_status']}'>{r['candidate_status']}</span> "
            f"({html.escape(r['candidate_outcome'])})</summary>{why}"
            "<table><colgroup><col class='n'><col class='c'><col><col></colgroup>"
            "<tr><th>#</th><th>caller</th><th>base</th><th>candidate</th></tr>" + "".join(trs) + "</table></details>"
        )
    return filters + "<div class='matrix'>" + "".join(blocks) + "</div>"


def transcript_html(t: TrialResult) -> str:
    """One trial's transcript as a collapsed block, opened when the trial failed."""
    rows = "".join(
        f"<tr><td>{i + 1}</td><td>{html.escape(turn['caller'])}</td><td>{html.escape(turn['agent_name'])}</td>"
        f"<td>{html.escape(turn['agent'])}"
        + "".join(f"<span class='rule'>{html.escape(r)}</span>" for r in turn["reply_rules_broken"])
        + f"</td><td>{turn['latency_ms']:.0f}</td></tr>"
        for i, turn in enumerate(transcript(t))
    )
    opened = " open" if t.counts_as_failure else ""
    return (
        f"<details{opened}><summary>transcript: {len(t.turns)} turns</summary><table class='transcript'>"
        f"<tr><th>#</th><th>caller</th><th>agent</th><th>reply</th><th>ms</th></tr>{rows}</table></details>"
    )


def print_transcript(t: TrialResult, console: Console) -> None:
    """One trial's transcript in the terminal, reply rules broken in red."""
    console.print(f"[bold]{t.suite}/{t.scenario}[{t.trial}][/] ({t.status}, {t.outcome})")
    for turn in transcript(t):
        console.print(Text("  caller: ", style="cyan") + Text(turn["caller"]))
        line = Text(f"  {turn['agent_name']}: ", style="magenta") + Text(turn["agent"])
        for rule in turn["reply_rules_broken"]:
            line.append(f" [{rule}]", style="bold red")
        console.print(line)
