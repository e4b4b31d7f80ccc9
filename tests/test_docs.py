"""The README says what the code does: its lists are checked against the code, so they cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_commands_table_names_every_command() -> None:
    import typer.main

    from k2probe.cli.app import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    table = README[README.index("## Commands"):]
    named = set(re.findall(r"^\| `k2probe ([a-z]+)", table, re.M)) | set(re.findall(r"/ `([a-z]+) RUN`", table))
    assert commands - {"version"} <= named, sorted(commands - named)


def test_doctors_code_list_is_the_one_in_the_code() -> None:
    from k2probe.diagnose.doctor import DIAGNOSES

    listed = README[README.index("first failure's code from:"):]
    listed = listed[listed.index("`") + 1:]
    codes = [c.strip() for c in listed[:listed.index("`")].split(",")]
    assert codes == list(DIAGNOSES)


def test_every_document_the_readme_and_code_cite_is_shipped() -> None:
    cited = set(re.findall(r"(docs/[\w.-]+\.md)", README))
    for source in (ROOT / "src").rglob("*.py"):
        cited |= set(re.findall(r"(docs/[\w.-]+\.md)", source.read_text(encoding="utf-8")))
    assert cited and all((ROOT / path).is_file() for path in cited), sorted(cited)
    assert not re.search(r"(?<!docs/)kimi-contract\.md", README)

