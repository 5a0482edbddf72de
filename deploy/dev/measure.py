"""Run a command and report the CPU seconds and peak memory of its process tree, by role, as JSON.

The figures behind the Kubernetes resource requests and `switchboard capacity` come from this (deploy/README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil

ROLES = (("redis-server", "redis"), (" serve", "api"), (" worker", "queue-worker"), ("call-audio", "voice-call"))


def _role(cmdline: list[str]) -> str:
    line = " ".join(cmdline)
    return next((role for needle, role in ROLES if needle in line), "other")


def measure(cmd: list[str], interval_s: float) -> dict[str, object]:
    """Sample the tree every ``interval_s``; a child counts towards the role of its top process below ``cmd``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)  # noqa: S603 - the operator's own command line
    root = psutil.Process(proc.pid)
    cpu: dict[int, float] = {}  # pid -> last seen user+system seconds
    role_of: dict[int, str] = {}
    peak_rss: dict[str, int] = {}  # role -> highest sum of its processes' RSS at one sample
    peak_proc_rss: dict[str, int] = {}  # role -> highest RSS of one of its processes
    peak_total = 0
    started = time.monotonic()
    while proc.poll() is None:
        try:
            tops = root.children()
        except psutil.NoSuchProcess:
            break
        total = 0
        by_role: dict[str, int] = {}
        for top in [root, *tops]:
            try:
                role = "driver" if top.pid == root.pid else _role(top.cmdline())
                members = [top] if top.pid == root.pid else [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in members:
                try:
                    with p.oneshot():
                        times = p.cpu_times()
                        rss = p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                cpu[p.pid] = times.user + times.system
                # A process that exited shows an empty command line: it keeps the role it had.
                if role_of.get(p.pid, "other") == "other":
                    role_of[p.pid] = role
                by_role[role] = by_role.get(role, 0) + rss
                peak_proc_rss[role] = max(peak_proc_rss.get(role, 0), rss)
                total += rss
        for role, rss in by_role.items():
            peak_rss[role] = max(peak_rss.get(role, 0), rss)
        peak_total = max(peak_total, total)
        time.sleep(interval_s)
    out = proc.stdout.read() if proc.stdout else b""
    cpu_by_role: dict[str, float] = {}
    for pid, seconds in cpu.items():
        cpu_by_role[role_of[pid]] = cpu_by_role.get(role_of[pid], 0.0) + seconds
    mib = 1024 * 1024
    return {
        "command": cmd,
        "exit_code": proc.returncode,
        "wall_s": round(time.monotonic() - started, 2),
        "cpu_s": {k: round(v, 2) for k, v in sorted(cpu_by_role.items())},
        "peak_rss_mib": {k: round(v / mib) for k, v in sorted(peak_rss.items())},
        "peak_process_rss_mib": {k: round(v / mib) for k, v in sorted(peak_proc_rss.items())},
        "peak_tree_rss_mib": round(peak_total / mib),
        "output": out.decode(errors="replace")[-4000:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=0.2, help="Seconds between samples.")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="The command, after --.")
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the command to measure after --")
    json.dump(measure(cmd, args.interval), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
