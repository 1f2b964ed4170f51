"""The vault against the catalog.

callvault vault check [--repair] [--grace 1h] [--prefix P] [--json]
callvault vault sync [--all]
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta

import click

from callvault.cli._common import echo_json, fail, open_endoflife, settings_of
from callvault.errors import CallvaultError

__all__ = ["vault", "parse_duration"]

_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d`` (or a sum such as ``1h30m``) as a timedelta.

    Raises:
        click.BadParameter: anything else.
    """
    parts = _DURATION.findall(text.strip().lower())
    if not parts or _DURATION.sub("", text.strip().lower()).strip():
        raise click.BadParameter(f"{text!r} is not a duration such as 90s, 15m, 1h or 2d")
    total = timedelta()
    for amount, unit in parts:
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total


@click.group()
def vault() -> None:
    """The vault against the catalog: orphans, missing objects, tags and S3 legal holds."""


@vault.command("check")
@click.option(
    "--repair",
    is_flag=True,
    help="Delete orphan objects (every version) older than --grace; audited.",
)
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    help="Leave orphans younger than this alone (an ingest may still be committing).",
)
@click.option("--prefix", default="", help="Check only vault keys starting with this.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.pass_context
def vault_check(ctx: click.Context, repair: bool, grace: str, prefix: str, as_json: bool) -> None:
    """Report objects no stored recording names (orphans) and recordings without their object.

    Exit 0 when vault and catalog agree (or every orphan was repaired), 1 when something
    is left to fix, 2 on configuration errors.
    """
    from tqdm import tqdm

    from storage.vaultcheck import VaultCheck

    grace_period = parse_duration(grace)
    settings = settings_of(ctx)
    with open_endoflife(ctx, actor=f"cli:{settings.worker_id}") as lifecycle:
        services = lifecycle.services
        check = VaultCheck(
            services.catalog, services.vault, actor=lifecycle.actor, clock=services.clock
        )
        try:
            with tqdm(
                total=check.count_recordings(), unit="obj", desc="checking", file=sys.stderr
            ) as bar:
                result = check.run(
                    repair=repair, grace=grace_period, prefix=prefix, progress=bar.update
                )
        except CallvaultError as exc:
            fail(str(exc))
    if as_json:
        echo_json(result.to_json())
    else:
        click.echo(
            f"{result.objects} object(s) in {services.vault.url}, "
            f"{result.recordings} stored recording(s): {len(result.orphans)} orphan(s), "
            f"{len(result.missing)} missing, {result.pending} awaiting a deletion in progress, "
            f"{result.dead_letters} dead-letter original(s), {result.audit_objects} audit object(s)"
        )
        for finding in result.orphans[:20]:
            age = f", written {finding.modified_at:%Y-%m-%d %H:%M}" if finding.modified_at else ""
            click.echo(f"  orphan   {finding.object_key}  ({finding.reason}{age})")
        for finding in result.missing[:20]:
            click.echo(
                f"  missing  {finding.object_key}  ({finding.reason}, "
                f"recording {finding.recording_id})"
            )
        if repair:
            click.echo(
                f"repaired: {len(result.repaired)} orphan(s) deleted, {result.too_young} "
                f"younger than {grace} left, {len(result.failed)} not deleted"
            )
    sys.exit(0 if result.clean else 1)


@vault.command("sync")
@click.option(
    "--all", "every", is_flag=True, help="Rewrite the tags of every stored recording first."
)
@click.pass_context
def vault_sync(ctx: click.Context, every: bool) -> None:
    """Bring vault tags and S3 legal holds in line with the catalog (what the worker's
    sweep does every minute); --all also re-tags objects written by older versions."""
    from tqdm import tqdm

    from storage.catalog.vaultsync import HOLD, TAGS

    with open_endoflife(ctx) as lifecycle:
        mirror = lifecycle.services.mirror
        try:
            if every:
                mirror.queue.enqueue_stored(TAGS | HOLD)
            with tqdm(total=mirror.pending(), unit="rec", desc="syncing", file=sys.stderr) as bar:
                result = mirror.sync(progress=bar.update)
        except CallvaultError as exc:
            fail(str(exc))
    click.echo(
        f"tags rewritten on {result.tagged} object(s); S3 legal hold set on {result.held}, "
        f"cleared on {result.released}; {len(result.missing)} recording(s) without an object; "
        f"{len(result.failed)} failed (still queued)"
    )
    sys.exit(0 if not result.failed and not result.missing else 1)
