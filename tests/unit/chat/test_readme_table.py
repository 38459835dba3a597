"""The README's command table is the registry's, generated (edit the registry, then paste
``bot.chat.registry.markdown_table()`` between the markers)."""

from __future__ import annotations

from pathlib import Path

from bot.chat.registry import markdown_table

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_lists_exactly_the_registry_s_commands() -> None:
    text = README.read_text(encoding="utf-8")
    begin = text.index("<!-- commands:begin")
    start = text.index("\n", begin) + 1
    end = text.index("<!-- commands:end -->")
    assert text[start:end].strip() == markdown_table()
