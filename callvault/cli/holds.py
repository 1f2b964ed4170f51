"""Legal holds.

callvault hold place --scope recording|customer|call --target X [--tenant T]
                     --reason R --reference REF --by USER
callvault hold release HOLD_ID --reason R --by USER
callvault hold list [--all]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from callvault.cli._common import fail, open_endoflife
from callvault.errors import CallvaultError

if TYPE_CHECKING:
    from storage.mirror import MirrorResult

__all__ = ["hold"]


@click.group()
def hold() -> None:
    """Legal holds: recordings kept past retention and erasure."""


@hold.command("place")
@click.option("--scope", type=click.Choice(["recording", "customer", "call"]), required=True)
@click.option("--target", required=True, help="Recording id, customer reference or call id.")
@click.option("--tenant", default=None, help="Tenant (required for customer and call).")
@click.option("--reason", required=True, help="Why (e.g. litigation, regulator request).")
@click.option("--reference", required=True, help="Case or matter number.")
@click.option("--by", "placed_by", required=True, help="Who orders the hold (user id).")
@click.pass_context
def hold_place(
    ctx: click.Context,
    scope: str,
    target: str,
    tenant: str | None,
    reason: str,
    reference: str,
    placed_by: str,
) -> None:
    """Place a legal hold."""
    from storage.catalog.holds import HoldScope
    from storage.subjectdetails import sealed_subject

    with open_endoflife(ctx, actor=f"user:{placed_by}") as lifecycle:
        try:
            if scope == "recording" and tenant is None:
                row = lifecycle.services.catalog.get_recording(target)
                if row is None:
                    fail(f"no recording {target!r}")
                tenant = row.tenant
            if not tenant:
                fail(f"--tenant is required for scope {scope}")
            assert tenant is not None
            key = (
                lifecycle.services.keys.subject_ref(tenant, target)
                if scope == "customer"
                else target
            )
            placed = lifecycle.holds.place(
                tenant=tenant,
                scope=HoldScope.SUBJECT if scope == "customer" else HoldScope(scope),
                target=key,
                reason=reason,
                reference=reference,
                placed_by=placed_by,
                actor=f"user:{placed_by}",
                sealed_target=(
                    sealed_subject(lifecycle.services.keys, key) if scope == "customer" else None
                ),
            )
            covers = lifecycle.holds.covered_recording_ids(placed)
            mirrored = lifecycle.sync_vault(holds_only=True)
        except CallvaultError as exc:
            fail(str(exc))
    click.echo(f"{placed.hold_id}: {scope} hold placed; covers {len(covers)} recording(s) now")
    _echo_mirror(mirrored)


def _echo_mirror(mirrored: MirrorResult | None) -> None:
    if mirrored is None:
        click.echo("  vault not updated yet (see the log); the next sweep retries")
    elif mirrored.held or mirrored.released:
        click.echo(
            f"  S3 legal hold set on {mirrored.held}, cleared on {mirrored.released} object(s)"
        )
    if mirrored is not None and mirrored.failed:
        click.echo(f"  {len(mirrored.failed)} object(s) not updated yet; the next sweep retries")


@hold.command("release")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends.")
@click.option("--by", "released_by", required=True, help="Who releases it (user id).")
@click.pass_context
def hold_release(ctx: click.Context, hold_id: str, reason: str, released_by: str) -> None:
    """Release a legal hold (the next sweep deletes what is overdue)."""
    with open_endoflife(ctx, actor=f"user:{released_by}") as lifecycle:
        try:
            released = lifecycle.holds.release(
                hold_id, released_by=released_by, reason=reason, actor=f"user:{released_by}"
            )
            mirrored = lifecycle.sync_vault(holds_only=True)
        except CallvaultError as exc:
            fail(str(exc))
    click.echo(f"{released.hold_id}: released at {released.released_at}")
    _echo_mirror(mirrored)


@hold.command("list")
@click.option("--all", "every", is_flag=True, help="Include released holds.")
@click.pass_context
def hold_list(ctx: click.Context, every: bool) -> None:
    """List legal holds."""
    with open_endoflife(ctx) as lifecycle:
        try:
            holds = lifecycle.holds.list_holds(active_only=not every)
        except CallvaultError as exc:
            fail(str(exc))
    if not holds:
        click.echo("no legal holds" if every else "no active legal holds")
    for item in holds:
        state = "active" if item.active else f"released {item.released_at:%Y-%m-%d}"
        click.echo(
            f"{item.hold_id}  {item.scope.value:9} {item.tenant}/{item.target[:24]}  {state}  "
            f"{item.reason} (ref {item.reference}, by {item.placed_by})"
        )


# -- privacy requests ------------------------------------------------------------------------------
