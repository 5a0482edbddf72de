"""The softphone bundle the console serves is the one its npm project pins, built and committed beside it."""

from __future__ import annotations

import json
import re

import pytest

from orchestrator.config import REPO_ROOT

pytestmark = pytest.mark.unit

WEB = REPO_ROOT / "orchestrator" / "console" / "web"
BUNDLE = REPO_ROOT / "orchestrator" / "console" / "static" / "softphone.js"


def test_livekit_client_is_pinned_exactly_and_locked() -> None:
    package = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    for deps in (package["dependencies"], package["devDependencies"]):
        for name, version in deps.items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not an exact version"
            assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_the_served_bundle_was_built_from_the_pinned_livekit_client() -> None:
    pinned = json.loads((WEB / "package.json").read_text())["dependencies"]["livekit-client"]
    banner = BUNDLE.read_text().splitlines()[0]
    assert f"livekit-client {pinned}" in banner
    # The build script stamps the same version, so a bump of one without the other is caught here.
    assert f"livekit-client {pinned}" in json.loads((WEB / "package.json").read_text())["scripts"]["build"]
    # No CDN at run time: the bundle loads nothing from elsewhere.
    bundle = BUNDLE.read_text()
    assert "cdn.jsdelivr" not in bundle
    assert "unpkg.com" not in bundle
