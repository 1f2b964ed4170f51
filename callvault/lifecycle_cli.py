"""CLI commands for retention, legal holds and privacy requests (added to ``callvault``).

    callvault retention sweep [--dry-run] [--limit N] [--now ISO]
    callvault retention reschedule [--force]
    callvault retention receipt verify FILE|RECEIPT_ID
    callvault retention receipt show RECEIPT_ID|--recording ID
    callvault hold place --scope recording|customer|call --target X [--tenant T]
                         --reason R --reference REF --by USER
    callvault hold release HOLD_ID --reason R --by USER
    callvault hold list [--all]
    callvault privacy submit FILE --by USER
    callvault privacy status REQUEST_ID

Exit codes: 0 done, 1 the checked thing is bad (a receipt that does not verify, a
sweep that could not delete some objects), 2 usage or configuration errors (also an
unknown hold, request or receipt id).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from callvault.errors import CallvaultError
from callvault.settings import Settings

__all__ = ["retention", "hold", "privacy"]


def _fail(message: str, code: int = 2) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@contextmanager
def _lifecycle(ctx: click.Context, actor: str | None = None) -> Iterator[Any]:
    from callvault.services import build_services
    from streams.lifecycle import Lifecycle

    settings = ctx.obj
    assert isinstance(settings, Settings)
    try:
        services = build_services(settings)
    except CallvaultError as exc:
        _fail(str(exc))
    try:
        yield Lifecycle.from_services(services, actor=actor or f"cli:{settings.worker_id}")
    finally:
        services.close()


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


# -- retention ---------------------------------------------------------------------------------


@click.group()
def retention() -> None:
    """Retention: the sweep, schedules and deletion receipts."""


@retention.command("sweep")
@click.option("--dry-run", is_flag=True, help="Report what is due; change nothing.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Expire at most N recordings."
)
@click.option(
    "--now", "now_text", default=None, help="Sweep as of this ISO 8601 time (tests, catch-up)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.pass_context
def retention_sweep(
    ctx: click.Context, dry_run: bool, limit: int | None, now_text: str | None, as_json: bool
) -> None:
    """Delete every recording past its retain-until that no legal hold keeps."""
    from tqdm import tqdm

    now = None
    if now_text:
        try:
            now = datetime.fromisoformat(now_text.replace("Z", "+00:00"))
        except ValueError:
            _fail(f"--now {now_text!r} is not an ISO 8601 time")
        if now is None or now.tzinfo is None:
            _fail("--now needs a time zone, e.g. 2027-01-01T00:00:00+00:00")
    with _lifecycle(ctx) as lifecycle:
        try:
            moment = now or lifecycle.services.clock()
            due, held = lifecycle.retention.lifecycle.count_overdue(moment)
            total = min(due, limit) if limit else due
            with tqdm(
                total=total,
                unit="rec",
                desc="dry run" if dry_run else "expiring",
                file=sys.stderr,
                disable=total == 0,
            ) as bar:
                result = lifecycle.sweep_and_resume(
                    now=moment, dry_run=dry_run, limit=limit, progress=bar.update
                )
        except CallvaultError as exc:
            _fail(str(exc))
    if as_json:
        _echo_json(result.to_json())
    else:
        verb = "would expire" if dry_run else "expired"
        click.echo(
            f"{verb} {len(result.expired)} recording(s); {len(result.held)} kept by legal holds; "
            f"{len(result.failed)} failed; {result.resumed} interrupted deletion(s) finished; "
            f"{result.rescheduled} rescheduled ({result.seconds:.2f}s)"
        )
        for item in result.held[:20]:
            hold = item["hold"]
            click.echo(
                f"  held {item['recording_id']}: {hold['hold_id']} ({hold['reason']}; "
                f"ref {hold['reference']}; placed by {hold['placed_by']})"
            )
    if result.failed:
        sys.exit(1)


@retention.command("reschedule")
@click.option("--force", is_flag=True, help="Recompute even if the retention rules did not change.")
@click.pass_context
def retention_reschedule(ctx: click.Context, force: bool) -> None:
    """Recompute retain-until of every stored recording if the policy's rules changed."""
    from tqdm import tqdm

    with _lifecycle(ctx) as lifecycle:
        try:
            total = lifecycle.retention.lifecycle.count_stored()
            with tqdm(
                total=total, unit="rec", desc="rescheduling", file=sys.stderr, disable=total == 0
            ) as bar:
                result = lifecycle.retention.reschedule_if_policy_changed(
                    force=force, progress=bar.update
                )
        except CallvaultError as exc:
            _fail(str(exc))
    if result.previous_digest == result.digest and not force:
        click.echo(f"retention rules unchanged ({result.digest[:12]}); nothing to do")
        return
    click.echo(
        f"rules {str(result.previous_digest)[:12]} -> {result.digest[:12]}: "
        f"{result.changed} of {result.checked} stored recording(s) rescheduled"
        + (
            f"; {len(result.skipped)} kept their schedule (no rule for their purposes)"
            if result.skipped
            else ""
        )
    )


@retention.group("receipt")
def receipt() -> None:
    """Signed deletion receipts."""


@receipt.command("verify")
@click.argument("source")
@click.pass_context
def receipt_verify(ctx: click.Context, source: str) -> None:
    """Verify a receipt: a JSON FILE (as printed by `receipt show`) or a RECEIPT_ID."""
    from storage.catalog.receipts import DeletionReceipt, ReceiptError

    with _lifecycle(ctx) as lifecycle:
        try:
            path = Path(source)
            if path.is_file():
                found = DeletionReceipt.from_json(path.read_text())
            else:
                found = lifecycle.receipts.get(source)
        except ReceiptError as exc:
            _fail(str(exc))
        except (OSError, CallvaultError) as exc:
            _fail(str(exc))
        ok = lifecycle.signer.verify(found)
    payload = found.payload
    if not ok:
        click.secho(f"receipt {payload.get('receipt_id')}: signature INVALID", fg="red")
        sys.exit(1)
    click.echo(
        f"receipt {payload['receipt_id']}: valid - recording {payload['recording_id']} "
        f"{payload['effects'].get('catalog_state')} at {payload['deleted_at']} "
        f"({payload['reason']}, rule {payload['rule']}) by {payload['actor']}"
    )


@receipt.command("show")
@click.argument("receipt_id", required=False)
@click.option("--recording", default=None, help="Show the receipts of this recording id.")
@click.pass_context
def receipt_show(ctx: click.Context, receipt_id: str | None, recording: str | None) -> None:
    """Print a receipt (or a recording's receipts) as JSON."""
    if bool(receipt_id) == bool(recording):
        _fail("give a RECEIPT_ID or --recording ID")
    with _lifecycle(ctx) as lifecycle:
        try:
            if receipt_id:
                _echo_json(lifecycle.receipts.get(receipt_id).to_json())
            else:
                found = lifecycle.receipts.for_recording(recording)
                if not found:
                    _fail(f"no deletion receipt for recording {recording!r}")
                _echo_json([r.to_json() for r in found])
        except CallvaultError as exc:
            _fail(str(exc))


# -- holds ----------------------------------------------------------------------------------------


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

    with _lifecycle(ctx, actor=f"user:{placed_by}") as lifecycle:
        try:
            if scope == "recording" and tenant is None:
                row = lifecycle.services.catalog.get_recording(target)
                if row is None:
                    _fail(f"no recording {target!r}")
                tenant = row.tenant
            if not tenant:
                _fail(f"--tenant is required for scope {scope}")
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
            )
            covers = lifecycle.holds.covered_recording_ids(placed)
        except CallvaultError as exc:
            _fail(str(exc))
    click.echo(f"{placed.hold_id}: {scope} hold placed; covers {len(covers)} recording(s) now")


@hold.command("release")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends.")
@click.option("--by", "released_by", required=True, help="Who releases it (user id).")
@click.pass_context
def hold_release(ctx: click.Context, hold_id: str, reason: str, released_by: str) -> None:
    """Release a legal hold (the next sweep deletes what is overdue)."""
    with _lifecycle(ctx, actor=f"user:{released_by}") as lifecycle:
        try:
            released = lifecycle.holds.release(
                hold_id, released_by=released_by, reason=reason, actor=f"user:{released_by}"
            )
        except CallvaultError as exc:
            _fail(str(exc))
    click.echo(f"{released.hold_id}: released at {released.released_at}")


@hold.command("list")
@click.option("--all", "every", is_flag=True, help="Include released holds.")
@click.pass_context
def hold_list(ctx: click.Context, every: bool) -> None:
    """List legal holds."""
    with _lifecycle(ctx) as lifecycle:
        try:
            holds = lifecycle.holds.list_holds(active_only=not every)
        except CallvaultError as exc:
            _fail(str(exc))
    if not holds:
        click.echo("no legal holds" if every else "no active legal holds")
    for item in holds:
        state = "active" if item.active else f"released {item.released_at:%Y-%m-%d}"
        click.echo(
            f"{item.hold_id}  {item.scope.value:9} {item.tenant}/{item.target[:24]}  {state}  "
            f"{item.reason} (ref {item.reference}, by {item.placed_by})"
        )


# -- privacy requests ------------------------------------------------------------------------------


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

    with _lifecycle(ctx, actor=f"user:{requested_by}") as lifecycle:
        try:
            done = lifecycle.privacy.submit(path.read_bytes(), requested_by=requested_by)
        except PrivacyRequestRejected as exc:
            _fail(f"request rejected ({exc.reason}): {exc.detail}")
        except CallvaultError as exc:
            _fail(str(exc), 1)
        _echo_json(done.to_json(lifecycle.services.clock()))


@privacy.command("status")
@click.argument("request_id")
@click.pass_context
def privacy_status(ctx: click.Context, request_id: str) -> None:
    """Show a privacy request's status, progress and result."""
    with _lifecycle(ctx) as lifecycle:
        try:
            found = lifecycle.privacy.get(request_id)
        except CallvaultError as exc:
            _fail(str(exc))
        _echo_json(found.to_json(lifecycle.services.clock()))
