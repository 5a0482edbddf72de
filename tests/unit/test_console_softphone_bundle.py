"""The softphone bundle the console serves is the one its npm project pins, built from the committed source."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from orchestrator.config import REPO_ROOT

pytestmark = pytest.mark.unit

WEB = REPO_ROOT / "orchestrator" / "console" / "web"
BUNDLE = REPO_ROOT / "orchestrator" / "console" / "static" / "softphone.js"


def test_livekit_client_and_esbuild_are_pinned_exactly_and_locked() -> None:
    package = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    for deps in (package["dependencies"], package["devDependencies"]):
        for name, version in deps.items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not an exact version"
            assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_the_served_bundle_was_built_from_the_committed_source_and_lock() -> None:
    pinned = json.loads((WEB / "package.json").read_text())["dependencies"]["livekit-client"]
    # build.mjs stamps a digest of the source and the lock file: a change to either without `make softphone`
    # leaves the old bundle, and this test, behind.
    digest = hashlib.sha256((WEB / "src" / "softphone.js").read_bytes() + (WEB / "package-lock.json").read_bytes())
    banner = BUNDLE.read_text().splitlines()[0]
    assert f"livekit-client {pinned} (Apache-2.0), source {digest.hexdigest()[:16]}." in banner, banner


def test_the_bundle_loads_nothing_from_elsewhere() -> None:
    bundle = BUNDLE.read_text()
    # No CDN at run time: livekit-client is inside, and nothing is fetched from a package host.
    for host in ("cdn.jsdelivr", "unpkg.com", "cdnjs.", "esm.sh"):
        assert host not in bundle, host
