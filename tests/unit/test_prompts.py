"""Every prompt file loads, every template renders, and a broken file names itself."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from agents.prompts import PromptError, Prompts
from orchestrator.config import PROMPTS_DIR

pytestmark = pytest.mark.unit


def test_all_prompts_load_and_render() -> None:
    prompts = Prompts.load(PROMPTS_DIR)
    assert prompts.reply("greeting").startswith("Thanks for calling Northwind Broadband")
    for key, template in prompts.replies.items():
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        assert prompts.reply(key, **dict.fromkeys(fields, "X"))
    for agent in ("router", "scheduling", "billing", "support"):
        assert prompts.system(agent)
    assert "Let me look that up." in prompts.phrases()


def test_missing_field_and_missing_reply_are_named() -> None:
    prompts = Prompts.load(PROMPTS_DIR)
    with pytest.raises(PromptError, match="scheduling.offer"):
        prompts.reply("scheduling.offer")
    with pytest.raises(PromptError, match="no reply named 'nope'"):
        prompts.reply("nope")


def test_malformed_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "replies.yaml").write_text("greeting: [unclosed\n")
    with pytest.raises(PromptError, match="replies.yaml"):
        Prompts.load(tmp_path)
