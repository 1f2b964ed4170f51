"""Retention: the sweep, rescheduling, deletion receipts.

callvault retention sweep [--dry-run] [--limit N] [--now ISO]
callvault retention reschedule [--force]
callvault retention receipt verify FILE|RECEIPT_ID
callvault retention receipt show RECEIPT_ID|--recording ID
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from callvault.cli._common import echo_json, fail, open_endoflife
from callvault.errors import CallvaultError
from callvault.inputfiles import read_input_text
from policies import expiry_cut

__all__ = ["retention"]


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
            fail(f"--now {now_text!r} is not an ISO 8601 time")
        if now is None or now.tzinfo is None:
            fail("--now needs a time zone, e.g. 2027-01-01T00:00:00+00:00")
    with open_endoflife(ctx) as lifecycle:
        try:
            moment = now or lifecycle.services.clock()
            due, held = lifecycle.retention.endoflife.count_overdue(expiry_cut(moment).cutoff)
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
            fail(str(exc))
    if as_json:
        echo_json(result.to_json())
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

    with open_endoflife(ctx) as lifecycle:
        try:
            total = lifecycle.retention.endoflife.count_stored()
            with tqdm(
                total=total, unit="rec", desc="rescheduling", file=sys.stderr, disable=total == 0
            ) as bar:
                result = lifecycle.retention.reschedule_if_policy_changed(
                    force=force, progress=bar.update
                )
        except CallvaultError as exc:
            fail(str(exc))
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

    with open_endoflife(ctx) as lifecycle:
        try:
            path = Path(source)
            if path.is_file():
                found = DeletionReceipt.from_json(
                    read_input_text(path, max_bytes=1 << 20, what="receipt file")
                )
            else:
                found = lifecycle.receipts.get(source)
        except ReceiptError as exc:
            fail(str(exc))
        except (OSError, CallvaultError) as exc:
            fail(str(exc))
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
        fail("give a RECEIPT_ID or --recording ID")
    with open_endoflife(ctx) as lifecycle:
        try:
            if receipt_id:
                echo_json(lifecycle.receipts.get(receipt_id).to_json())
            else:
                found = lifecycle.receipts.for_recording(recording)
                if not found:
                    fail(f"no deletion receipt for recording {recording!r}")
                echo_json([r.to_json() for r in found])
        except CallvaultError as exc:
            fail(str(exc))


# -- holds ----------------------------------------------------------------------------------------
