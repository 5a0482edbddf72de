"""Resolves `--prompts DIR|GIT-REF` to a folder: a directory as is, or `prompts/` of a git ref unpacked."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import ExitStack
from pathlib import Path

import yaml

from agents.prompts import Prompts
from orchestrator.config import PROMPTS_DIR, REPO_ROOT


class PromptsRefError(ValueError):
    """Neither a prompts folder nor a git ref that holds one."""


def resolve_prompts(spec: str | None, stack: ExitStack, repo: Path = REPO_ROOT) -> Path:
    """The prompts folder that `spec` names.

    Args:
        spec: a folder with `replies.yaml`, a git ref (branch, tag, commit, `HEAD~1`), or None for `prompts/`.
        stack: owns the temporary folder a git ref is unpacked into.
        repo: the git repository to read refs from.

    Raises:
        PromptsRefError: the folder has no replies.yaml, or the ref is unknown or has no `prompts/`.
    """
    if spec is None:
        return PROMPTS_DIR
    path = Path(spec)
    if path.is_dir():
        if not (path / "replies.yaml").is_file():
            raise PromptsRefError(f"{path} is not a prompts folder (no replies.yaml)")
        return path.resolve()
    rev = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if rev.returncode != 0:
        raise PromptsRefError(f"{spec!r} is neither a folder nor a git ref of {repo}")
    commit = rev.stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit, "prompts"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise PromptsRefError(f"git ref {spec!r} ({commit[:10]}) has no prompts/ folder")
    out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"switchboard-prompts-{commit[:10]}-")))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(out, filter="data")
    return out / "prompts"


def with_current_replies(folder: Path, stack: ExitStack, reference: Path = PROMPTS_DIR) -> tuple[Path, list[str]]:
    """An older prompts version made runnable on this code: the replies and prompt files it lacks, from `reference`.

    A base version from before a reply existed cannot run the code that asks for it; taking the reference's
    text for just those keeps the comparison about the prompts both versions have. The folder itself is never
    written: a copy is, when anything is missing.

    Returns:
        (the folder to run, the reply keys and file names taken from `reference`), the folder as is if none.
    """
    have, want = Prompts.load(folder).replies, Prompts.load(reference).replies
    missing = [key for key in want if key not in have]
    files = [p.name for p in sorted(reference.glob("*.md")) if not (folder / p.name).is_file()]
    if not missing and not files:
        return folder, []
    out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="switchboard-prompts-base-"))) / "prompts"
    shutil.copytree(folder, out)
    for name in files:
        shutil.copy2(reference / name, out / name)
    raw = yaml.safe_load((out / "replies.yaml").read_text(encoding="utf-8")) or {}
    for key in missing:
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = want[key]
    (out / "replies.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out, missing + files
