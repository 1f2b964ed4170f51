"""Settings: the reference table of CALLVAULT_* variables."""

from __future__ import annotations

import click

from callvault.settings import ENV_PREFIX, FIELDS

__all__ = ["config", "config_table"]


@click.group()
def config() -> None:
    """Settings."""


@config.command("reference")
def config_reference() -> None:
    """Print the table of CALLVAULT_* variables (Markdown), as in README.md."""
    click.echo(config_table())


def config_table() -> str:
    lines = ["| variable | default | example | meaning |", "| --- | --- | --- | --- |"]
    for field in FIELDS:
        meta = field.metadata
        lines.append(
            f"| `{ENV_PREFIX}{field.name.upper()}` | {meta['default_doc']} "
            f"| `{meta['example']}` | {meta['help']} |"
        )
    lines.append(
        f"| `{ENV_PREFIX}CONFIG` | (none) | `/etc/callvault/callvault.toml` "
        "| TOML file with any of the settings above (lower-case keys); the environment wins. |"
    )
    return "\n".join(lines)
