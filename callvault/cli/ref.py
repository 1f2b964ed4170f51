"""Keyed references: what logs and DLQ headers say instead of recording ids.

callvault ref RECORDING_ID...
"""

from __future__ import annotations

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError

__all__ = ["ref"]


@click.command()
@click.argument("recording_ids", nargs=-1, required=True)
@click.pass_context
def ref(ctx: click.Context, recording_ids: tuple[str, ...]) -> None:
    """Print the keyed reference (r + 11 hex digits) that log lines and DLQ headers use
    for RECORDING_ID (sealed objects' headers hold the digest it starts), to grep for
    it. Needs the keyring (CALLVAULT_KEYRING)."""
    from callvault.services import keyring_for
    from streams.refs import recording_ref

    try:
        keyring = keyring_for(settings_of(ctx))
        for recording_id in recording_ids:
            click.echo(f"{recording_ref(keyring, recording_id)}  {recording_id}")
    except CallvaultError as exc:
        fail(str(exc))
