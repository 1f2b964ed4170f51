"""README.md's configuration reference is exactly `callvault config reference`."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from callvault.cli import cli
from callvault.cli.config import config_table
from callvault.settings import FIELDS

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def readme_table() -> str:
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "config-reference markers missing"
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def test_readme_section_equals_the_generated_table() -> None:
    assert readme_table() == config_table(), (
        "README.md's configuration reference is out of date: paste the output of "
        "`callvault config reference` between the config-reference markers"
    )


def test_the_command_prints_the_same_table() -> None:
    result = CliRunner().invoke(cli, ["config", "reference"])
    assert result.exit_code == 0, result.output
    assert result.output.strip("\n") == config_table()


def test_every_setting_has_a_row_with_default_and_example() -> None:
    rows = [line for line in readme_table().splitlines()[2:]]
    names = [re.match(r"\| `(CALLVAULT_[A-Z0-9_]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]
    assert names == [f"CALLVAULT_{f.name.upper()}" for f in FIELDS] + ["CALLVAULT_CONFIG"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4 and all(cells), row
