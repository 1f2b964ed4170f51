"""The audit log: prove the chain intact."""

from __future__ import annotations

import sys

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Recompute the hash chain; name the first broken record if any."""
    from tqdm import tqdm

    from callvault.services import sql_timeouts
    from storage.catalog import open_catalog

    settings = settings_of(ctx)
    try:
        catalog = open_catalog(settings.catalog, timeouts=sql_timeouts(settings))
        log = catalog.audit
        head = log.head()
        total = head.seq if head else 0
        with tqdm(
            total=total, unit="rec", desc="verifying", disable=total < 1000, file=sys.stderr
        ) as bar:
            result = log.verify(progress=lambda done: bar.update(done - bar.n))
    except CallvaultError as exc:
        fail(str(exc))
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} records verified")
        return
    click.secho(
        f"audit chain BROKEN at record {result.first_broken_seq}: {result.problem} "
        f"({result.checked} records checked)",
        fg="red",
    )
    sys.exit(1)
