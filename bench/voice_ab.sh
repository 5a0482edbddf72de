#!/usr/bin/env bash
# Alternate `switchboard bench voice` at one concurrency level between another revision and this tree.
#
# Usage: bench/voice_ab.sh REV [PAIRS=3] [LEVEL=100]
#
# The other revision is checked out in a temporary worktree and run with this tree's venv (its code first
# on PYTHONPATH), so both sides use the same dependencies; runs alternate, old first, because a shared
# machine drifts over minutes. Prints one line per run: our overhead P50/P99 and the tenant's P99,
# paced and burst, in ms.
set -euo pipefail

rev=${1:?usage: bench/voice_ab.sh REV [PAIRS] [LEVEL]}
pairs=${2:-3}
level=${3:-100}
root=$(cd "$(dirname "$0")/.." && pwd)
python="$root/.venv/bin/python"
other=$(mktemp -d -t switchboard-ab-XXXXXX)
trap 'git -C "$root" worktree remove --force "$other" >/dev/null 2>&1 || rm -rf "$other"' EXIT
git -C "$root" worktree add --detach --quiet "$other" "$rev"

run() {  # run NAME DIR
    (cd "$2" && PYTHONPATH="$2" "$python" -c "from orchestrator.cli import app; app()" \
        bench voice --calls 200 --levels "$level" --no-embedded --json 2>/dev/null) |
        "$python" -c '
import json, sys
run = json.load(sys.stdin)["runs"][0]
paced, burst = run["ours"], run["burst"]["ours"]
print("%10s  paced overhead P50/P99 %s/%s tenant P99 %s  burst overhead P50/P99 %s/%s" % (
    sys.argv[1], paced["overhead_p50"], paced["overhead_p99"], paced["tenant_p99"],
    burst["overhead_p50"], burst["overhead_p99"]))
' "$1"
}

for _ in $(seq "$pairs"); do
    run "$rev" "$other"
    run "this tree" "$root"
done
