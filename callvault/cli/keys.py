"""Master-key administration: ``callvault keys rotate`` and ``callvault keys status``.

What a caller may rely on:

- :func:`rotate_master_key` rotates the keyring (``Keyring.rotate``: a new local master
  key, or for KMS a new signing key and the secrets file re-sealed under the configured
  KMS key), then rewraps every live subject key under the current master key with
  ``KeyService.rewrap_all``. Audio objects are never read or written. With
  ``resume=True`` the keyring is not rotated again: only the rewrap runs, skipping keys
  already under the current master key, so an interrupted rotation is finished without
  redoing work.
- Each run appends one audit record ``keys.rotated`` (counts only): outcome ``ok``, or
  ``interrupted`` when the rewrap stopped early (the exception is re-raised).
- :func:`key_status` reads the current master key, its age, and how many subject keys
  each master key wraps (live) and how many were destroyed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import click

from callvault.cli._common import fail, open_services, settings_of
from callvault.errors import CallvaultError
from storage.crypto import KmsKeyring
from storage.errors import LeaseHeld

if TYPE_CHECKING:  # the CLI imports this module; keep `callvault --help` light
    from callvault.services import Services

__all__ = ["KeyStatus", "RotationResult", "key_status", "rotate_master_key", "keys"]


@dataclass(frozen=True)
class KeyStatus:
    """The key hierarchy at a glance (no key material, no subject refs)."""

    backend: str  # "local" or "kms"
    current_key_id: str
    created_at: datetime
    age_days: float
    live_by_master_key: dict[str, int] = field(default_factory=dict)
    destroyed: int = 0

    @property
    def live(self) -> int:
        return sum(self.live_by_master_key.values())

    @property
    def pending_rewrap(self) -> int:
        """Live subject keys not yet under the current master key."""
        return self.live - self.live_by_master_key.get(self.current_key_id, 0)


@dataclass(frozen=True)
class RotationResult:
    master_key_id: str
    rotated: bool  # False with resume=True
    examined: int
    rewrapped: int


def key_status(services: Services) -> KeyStatus:
    """Count subject keys per master key.

    Raises:
        CatalogError: the catalog could not be read.
    """
    keyring = services.keyring
    rows = services.catalog.database.fetch_all(
        "SELECT master_key_id, COUNT(*) FROM subject_keys WHERE destroyed_at IS NULL "
        "GROUP BY master_key_id ORDER BY master_key_id"
    )
    destroyed = services.catalog.database.fetch_one(
        "SELECT COUNT(*) FROM subject_keys WHERE destroyed_at IS NOT NULL"
    )
    created = keyring.master_key_created_at()
    return KeyStatus(
        backend="kms" if isinstance(keyring, KmsKeyring) else "local",
        current_key_id=keyring.current_key_id,
        created_at=created,
        age_days=max(0.0, (services.clock() - created).total_seconds() / 86400),
        live_by_master_key={str(mk): int(n) for mk, n in rows},
        destroyed=int(destroyed[0]) if destroyed else 0,
    )


def rotate_master_key(
    services: Services,
    *,
    actor: str,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RotationResult:
    """Rotate the master key (unless ``resume``) and rewrap every live subject key.

    ``progress(1)`` is called after each subject key examined (fits ``tqdm.update``);
    an exception it raises (or Ctrl-C) stops the rewrap: the keys done so far stay
    done, an ``interrupted`` audit record is written, and the exception propagates.

    Raises:
        LeaseHeld: another rotation is running (the key-rotation lease is taken).
        KeyringError: the keyring could not rotate, or a key could not be rewrapped.
        CatalogError / AuditError: the catalog failed.
    """
    import os
    from datetime import timedelta

    from storage.catalog.leases import KEY_ROTATION_LEASE, LeaseStore

    # One rotation at a time across every worker and shell (a second one would rotate
    # the keyring again under the first one's rewrap).
    leases = LeaseStore(services.catalog.database, services.clock)
    with leases.holding(KEY_ROTATION_LEASE, f"{actor}:{os.getpid()}", timedelta(minutes=5)):
        return _rotate(services, actor=actor, resume=resume, progress=progress)


def _rotate(
    services: Services,
    *,
    actor: str,
    resume: bool,
    progress: Callable[[int], None] | None,
) -> RotationResult:
    from storage.catalog.audit import AuditDraft

    keyring = services.keyring
    master = keyring.rotate() if not resume else keyring.current_key_id
    examined = 0

    def step(n: int) -> None:
        nonlocal examined
        examined += n
        if progress is not None:
            progress(n)

    try:
        rewrapped = services.keys.rewrap_all(progress=step)
    except BaseException:
        remaining = key_status(services).pending_rewrap
        services.audit.append(
            AuditDraft(
                actor=actor,
                action="keys.rotated",
                outcome="interrupted",
                reason="rewrap-interrupted",
                details={"rotated": not resume, "examined": examined, "remaining": remaining},
            )
        )
        raise
    services.audit.append(
        AuditDraft(
            actor=actor,
            action="keys.rotated",
            outcome="ok",
            details={"rotated": not resume, "examined": examined, "rewrapped": rewrapped},
        )
    )
    return RotationResult(
        master_key_id=master, rotated=not resume, examined=examined, rewrapped=rewrapped
    )


# -- CLI ------------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """The master key: status and rotation (subject keys are rewrapped, audio untouched);
    reconcile: re-apply the erasure journal after a catalog restore."""


@keys.command("status")
@click.pass_context
def keys_status(ctx: click.Context) -> None:
    """Current master key, its age, and subject keys per master key."""
    from callvault.services import build_services

    try:
        services = build_services(settings_of(ctx))
    except CallvaultError as exc:
        fail(str(exc))
    try:
        status = key_status(services)
    except CallvaultError as exc:
        fail(str(exc), 1)
    finally:
        services.close()
    click.echo(f"backend:            {status.backend}")
    click.echo(f"current master key: {status.current_key_id}")
    click.echo(
        f"created:            {status.created_at.isoformat()} ({status.age_days:.1f} days ago)"
    )
    click.echo(f"subject keys:       {status.live} live, {status.destroyed} destroyed")
    for master, count in status.live_by_master_key.items():
        marker = " (current)" if master == status.current_key_id else ""
        click.echo(f"  {count:>8}  {master}{marker}")
    if status.pending_rewrap:
        click.secho(
            f"{status.pending_rewrap} live subject key(s) are under older master keys: "
            "run `callvault keys rotate --resume` to finish",
            fg="yellow",
        )


@keys.command("rotate")
@click.option(
    "--resume", is_flag=True, help="Do not rotate again: finish rewrapping an interrupted rotation."
)
@click.pass_context
def keys_rotate(ctx: click.Context, resume: bool) -> None:
    """Rotate the master key, then rewrap every subject key under it (never the audio)."""
    from tqdm import tqdm

    from callvault.services import build_services

    settings = settings_of(ctx)
    try:
        services = build_services(settings)
    except CallvaultError as exc:
        fail(str(exc))
    try:
        before = key_status(services)
        total = before.live + before.destroyed
        with tqdm(total=total, unit="key", desc="rewrapping", file=sys.stderr) as bar:
            result = rotate_master_key(
                services, actor=f"cli:{settings.worker_id}", resume=resume, progress=bar.update
            )
    except KeyboardInterrupt:
        fail("interrupted; run `callvault keys rotate --resume` to finish the rewrap", 1)
    except LeaseHeld as exc:
        fail(f"{exc}; nothing was rotated", 1)
    except CallvaultError as exc:
        fail(f"{exc}; keys rewrapped so far stay done: run `callvault keys rotate --resume`", 1)
    finally:
        services.close()
    verb = "resumed under" if resume else "rotated to"
    click.echo(
        f"master key {verb} {result.master_key_id}: "
        f"{result.rewrapped} subject key(s) rewrapped, {result.examined} examined"
    )


@keys.command("reconcile")
@click.option(
    "--full",
    is_flag=True,
    help="Read the whole journal, not only what was journaled since the last run.",
)
@click.pass_context
def keys_reconcile(ctx: click.Context, full: bool) -> None:
    """Re-apply the erasure journal kept in the vault: after restoring a catalog backup,
    destroy again every subject key an erasure destroyed and erase again every
    recording it erased (audited, with receipts). Workers do it at start; run it right
    after a restore. Reads what was journaled since the catalog's last run (which a
    restored backup carries), or everything with --full. Exits 1 if a journal entry's
    signature does not verify.

    \b
    Example:
      callvault keys reconcile
      erasure journal: 12 entries; 1 subject key(s) destroyed again, 3 recording(s) erased again
    """
    from streams.privacy.reapply import reapply_erasures

    with open_services(ctx) as services:
        try:
            report = reapply_erasures(services, actor=f"cli:{services.config.worker_id}", full=full)
        except CallvaultError as exc:
            fail(f"{exc}; nothing applied is undone: run it again", 1)
    click.echo(
        f"erasure journal: {report.entries} entries; {len(report.keys_destroyed)} subject "
        f"key(s) destroyed again, {len(report.recordings_erased)} recording(s) erased again"
    )
    if report.unsigned_entries:
        click.secho(
            f"{len(report.unsigned_entries)} entr(ies) do not verify and were not applied: "
            + ", ".join(report.unsigned_entries[:10]),
            fg="red",
        )
        sys.exit(1)
