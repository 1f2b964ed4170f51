"""The audit log: prove the chain intact."""

from __future__ import annotations

import sys

import click

from callvault.cli._common import fail, open_services, settings_of
from callvault.errors import CallvaultError

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Prove the audit log intact: recompute the hash chain, then check every signed
    checkpoint in the vault (signature, continuity, and that the log still holds the
    record each one signed). Names what broke and exits 1; exits 0 when intact.
    Records written since migration 14 hash their tenant too, so a record moved to
    another tenant is named like any other edit.

    \b
    Example:
      callvault audit verify
      audit chain intact: 5210 records verified
      checkpoints intact: 6 signed checkpoints, the last at seq 5000
    """
    from tqdm import tqdm

    from callvault.services import build_services
    from storage.checkpoints import verify_audit

    settings = settings_of(ctx)
    try:
        services = build_services(settings, migrate=False)
    except CallvaultError as exc:
        fail(str(exc))
    try:
        log = services.audit
        head = log.head()
        total = head.seq if head else 0
        with tqdm(
            total=total, unit="rec", desc="verifying", disable=total < 1000, file=sys.stderr
        ) as bar:
            chain, signed = verify_audit(
                log,
                services.audit_checkpoints(),
                progress=lambda done: bar.update(done - bar.n),
            )
    except CallvaultError as exc:
        fail(str(exc))
    finally:
        services.close()
    if chain.ok:
        click.echo(f"audit chain intact: {chain.checked} records verified")
    else:
        click.secho(
            f"audit chain BROKEN at record {chain.first_broken_seq}: {chain.problem} "
            f"({chain.checked} records checked)",
            fg="red",
        )
    for note in signed.notes:
        click.secho(f"note: {note}", fg="yellow")
    if signed.ok:
        click.echo(
            f"checkpoints intact: {signed.checkpoints} signed checkpoint(s)"
            + (f", the last at seq {signed.last_seq}" if signed.checkpoints else "")
        )
    else:
        click.secho(
            f"checkpoints BROKEN (first affected record {signed.first_broken_seq}):", fg="red"
        )
        for problem in signed.problems:
            click.secho(f"  {problem}", fg="red")
    if not (chain.ok and signed.ok):
        sys.exit(1)


@audit.command("checkpoint")
@click.option(
    "--restart",
    "reason",
    default=None,
    metavar="REASON",
    help="After deliberately restoring an older catalog backup: begin a new epoch at "
    "the current head, naming the last checkpoint and this reason (kept forever; "
    "`audit verify` reports the discarded checkpoints as a note).",
)
@click.pass_context
def audit_checkpoint(ctx: click.Context, reason: str | None) -> None:
    """Sign a checkpoint of the audit chain's head now (workers do it every
    CALLVAULT_AUDIT_CHECKPOINT_RECORDS records or CALLVAULT_AUDIT_CHECKPOINT_SECONDS).
    Refuses (exit 1) when the log no longer matches the last checkpoint, or while a
    worker is signing one (the audit-checkpoint lease); after a
    deliberate restore, --restart begins a new epoch (the records up to the head must
    still match the checkpoints that covered them).

    \b
    Examples:
      callvault audit checkpoint
      checkpoint signed at seq 5210 (audit/checkpoints/e0000/000000005210.json)
      callvault audit checkpoint --restart "restored the 2026-12-01 backup (INC-42)"
    """
    import os
    from datetime import timedelta

    from storage.catalog.audit import AuditDraft
    from storage.catalog.leases import CHECKPOINT_LEASE, LeaseStore
    from storage.checkpoints import CheckpointError
    from storage.errors import LeaseHeld

    with open_services(ctx) as services:
        # One signer at a time: the workers sign under the same lease (a second signer
        # could sign from a stale head and leave a checkpoint that breaks continuity).
        leases = LeaseStore(services.catalog.database, services.clock)
        holder = f"cli:{services.config.worker_id}:{os.getpid()}"
        try:
            with leases.holding(CHECKPOINT_LEASE, holder, timedelta(minutes=1)):
                checkpoints = services.audit_checkpoints()
                head = services.audit.head()
                if head is None:
                    click.echo("the audit log is empty: nothing to sign")
                    return
                if reason is not None:
                    services.audit.append(
                        AuditDraft(
                            actor=f"cli:{services.config.worker_id}",
                            action="audit.checkpoints-restarted",
                            outcome="ok",
                            reason="catalog-restored",
                            details={"restored_head_seq": head.seq},
                        )
                    )
                    written = checkpoints.restart(reason)
                    click.echo(
                        f"new checkpoint epoch {written.epoch} at seq {written.seq} ({written.key})"
                    )
                    return
                last = checkpoints.latest()
                if last is not None and last.seq == head.seq:
                    click.echo(f"seq {head.seq} is checkpointed already ({last.key})")
                    return
                written = checkpoints.write(head, last)
        except LeaseHeld as exc:
            click.secho(f"checkpoint not signed now: {exc}; try again in a minute", fg="red")
            sys.exit(1)
        except CheckpointError as exc:
            click.secho(f"checkpoint refused: {exc}", fg="red")
            sys.exit(1)
        except CallvaultError as exc:
            fail(str(exc))
    click.echo(f"checkpoint signed at seq {written.seq} ({written.key})")
