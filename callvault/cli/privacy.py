"""Customers' privacy requests.

callvault privacy submit FILE --by USER
callvault privacy status REQUEST_ID
"""

from __future__ import annotations

from pathlib import Path

import click

from callvault.cli._common import echo_json, fail, open_endoflife
from callvault.errors import CallvaultError

__all__ = ["privacy"]


@click.group()
def privacy() -> None:
    """Customers' privacy requests."""


@privacy.command("submit")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--by", "requested_by", required=True, help="Who files it (compliance officer's user id)."
)
@click.pass_context
def privacy_submit(ctx: click.Context, path: Path, requested_by: str) -> None:
    """File and carry out a privacy request (JSON file; see streams/privacy.py)."""
    from streams.privacy import PrivacyRequestRejected

    with open_endoflife(ctx, actor=f"user:{requested_by}") as lifecycle:
        try:
            done = lifecycle.privacy.submit(path.read_bytes(), requested_by=requested_by)
        except PrivacyRequestRejected as exc:
            fail(f"request rejected ({exc.reason}): {exc.detail}")
        except CallvaultError as exc:
            fail(str(exc), 1)
        echo_json(done.to_json(lifecycle.services.clock()))


@privacy.command("status")
@click.argument("request_id")
@click.pass_context
def privacy_status(ctx: click.Context, request_id: str) -> None:
    """Show a privacy request's status, progress and result."""
    with open_endoflife(ctx) as lifecycle:
        try:
            found = lifecycle.privacy.get(request_id)
        except CallvaultError as exc:
            fail(str(exc))
        echo_json(found.to_json(lifecycle.services.clock()))
