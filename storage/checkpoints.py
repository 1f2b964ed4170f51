"""Signed checkpoints of the audit chain's head, kept outside the catalog.

The hash chain (:mod:`storage.catalog.audit`) proves the log intact only against someone
who cannot write the database: whoever can may edit a record, re-chain every later one
and update the head, and the chain verifies again. A **checkpoint** pins the head as it
was: ``{seq, hash, at}`` of one record, signed with the keyring's signing key (HMAC with
the key file's signing key; for ``kms://`` with the signing key the KMS-encrypted
secrets hold), and written **to the vault**, not the catalog (``audit/checkpoints/``;
under the S3 legal hold where the bucket has Object Lock, so not even its owner can
delete it), and by the worker to the ``callvault.audit`` topic. A rewrite of any
record at or before the last checkpoint changes the hash of the checkpointed record,
which no longer matches what was signed.

What a caller may rely on:

- :meth:`AuditCheckpoints.write_due` writes a checkpoint when ``every_records`` records
  were appended since the last one, or ``every_seconds`` passed and any were; before
  signing, it checks that the log still holds the previous checkpoint's record with the
  signed hash and that every later record chains to it, and refuses
  (:class:`CheckpointError`) to sign a rewritten chain.
- A checkpoint names the one before it (``prev_seq`` and ``prev_digest``, the sha256 of
  its canonical payload), so a checkpoint deleted from the vault is noticed by the next.
- :meth:`AuditCheckpoints.verify` checks every checkpoint (signature, continuity, the
  log's record at its seq) and names what broke; :func:`verify_audit` runs it after the
  chain check (what ``callvault audit verify`` prints).
- Records after the last checkpoint are protected by the chain only, until the next
  checkpoint (at most ``every_records`` records or ``every_seconds``).
- After a deliberate restore of an older catalog backup, :meth:`AuditCheckpoints.restart`
  begins a new epoch at the restored head (signed, naming the last checkpoint and the
  reason); ``verify`` then reports the checkpoints the restore discarded as notes.
- One writer at a time: the worker signs only under the ``audit-checkpoint`` lease
  (:data:`~storage.catalog.leases.CHECKPOINT_LEASE`). ``write_due`` re-reads the last
  checkpoint from the vault before signing (never a cached copy), and a checkpoint key
  that already exists is never overwritten (:class:`CheckpointError`), so two writers
  that race anyway cannot orphan a checkpoint the next one names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from storage.catalog.audit import AuditLog, AuditVerification, canonical_json
from storage.catalog.sql import from_db_time, to_db_time
from storage.crypto.keyring import Keyring
from storage.errors import AuditError, RecordingNotFound
from storage.types import AuditEntry
from storage.vault.base import Vault

__all__ = [
    "AUDIT_PREFIX",
    "CHECKPOINT_KIND",
    "CHECKPOINT_PREFIX",
    "AuditCheckpoints",
    "Checkpoint",
    "CheckpointError",
    "CheckpointVerification",
    "checkpoint_key",
    "verify_audit",
]

log = logging.getLogger(__name__)

CHECKPOINT_KIND = "callvault.audit-checkpoint.v1"
#: Vault prefix of audit evidence kept outside the catalog (checkpoints, erasure journal):
#: never a recording, never an orphan for ``callvault vault check``.
AUDIT_PREFIX = "audit/"
#: Vault prefix of the checkpoint objects
#: (``audit/checkpoints/e<epoch, 4 digits>/<seq, 12 digits>.json``).
CHECKPOINT_PREFIX = AUDIT_PREFIX + "checkpoints/"
_TAGS = {"data-class": "audit-checkpoint"}


class CheckpointError(AuditError):
    """A checkpoint cannot be written: the log no longer matches the last one (rewritten),
    or the vault refused it."""


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint: the record ``seq`` carried ``hash`` (written at ``at``)."""

    seq: int
    hash: str
    at: datetime
    prev_seq: int
    prev_digest: str
    signature: str
    #: 0, then one more after each deliberate restart (:meth:`AuditCheckpoints.restart`).
    epoch: int = 0
    #: Only on the first checkpoint of an epoch > 0: ``{"reason", "kept_through_seq"}``.
    restart: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "kind": CHECKPOINT_KIND,
            "epoch": self.epoch,
            "seq": self.seq,
            "hash": self.hash,
            "at": to_db_time(self.at),
            "prev_seq": self.prev_seq,
            "prev_digest": self.prev_digest,
        }
        if self.restart is not None:
            payload["restart"] = self.restart
        return payload

    @property
    def key(self) -> str:
        """Where the checkpoint lives in the vault."""
        return checkpoint_key(self.seq, self.epoch)

    @property
    def digest(self) -> str:
        """sha256 of the canonical payload: what the next checkpoint names."""
        return hashlib.sha256(canonical_json(self.payload()).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"payload": self.payload(), "signature": self.signature}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json()).encode()

    @staticmethod
    def from_bytes(data: bytes) -> Checkpoint:
        """Raises: CheckpointError (not a checkpoint)."""
        try:
            body = json.loads(data)
            payload = body["payload"]
            if payload["kind"] != CHECKPOINT_KIND:
                raise ValueError(f"kind {payload['kind']!r}")
            return Checkpoint(
                seq=int(payload["seq"]),
                hash=str(payload["hash"]),
                at=from_db_time(str(payload["at"])),
                prev_seq=int(payload["prev_seq"]),
                prev_digest=str(payload["prev_digest"]),
                signature=str(body["signature"]),
                epoch=int(payload.get("epoch", 0)),
                restart=dict(payload["restart"]) if payload.get("restart") else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"not an audit checkpoint: {exc}") from None


def checkpoint_key(seq: int, epoch: int = 0) -> str:
    return f"{CHECKPOINT_PREFIX}e{epoch:04d}/{seq:012d}.json"


@dataclass(frozen=True)
class CheckpointVerification:
    """Result of :meth:`AuditCheckpoints.verify`: ``problems`` names each break (empty:
    intact); ``first_broken_seq`` is the earliest audit seq a break concerns."""

    checkpoints: int
    last_seq: int
    problems: tuple[str, ...] = ()
    first_broken_seq: int | None = None
    #: Deliberate restarts and the checkpoints they discarded (not problems).
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class AuditCheckpoints:
    """Writes and verifies the checkpoints of ``audit`` in ``vault`` (see the module
    docstring). ``publish`` receives each new checkpoint (the worker sends it to the
    audit topic)."""

    audit: AuditLog
    vault: Vault
    keyring: Keyring
    every_records: int = 1000
    every_seconds: float = 300.0
    publish: Callable[[Checkpoint], None] | None = None
    _last: Checkpoint | None = field(default=None, init=False, repr=False)

    # -- reading --------------------------------------------------------------------------
    def iter_checkpoints(self) -> Iterator[Checkpoint | CheckpointError]:
        """Every checkpoint in the vault in seq order (an unreadable one as its error).

        Raises:
            StorageError: the vault cannot be listed.
        """
        for key in sorted(self.vault.iter_keys(CHECKPOINT_PREFIX)):
            try:
                yield Checkpoint.from_bytes(self.vault.get(key))
            except RecordingNotFound:
                continue
            except CheckpointError as exc:
                yield CheckpointError(f"{key}: {exc}")

    def latest(self) -> Checkpoint | None:
        """The checkpoint of the highest seq whose signature verifies, or None.

        Raises:
            StorageError: the vault failed.
        """
        # the newest key first (epoch, then seq): only the tail is read, not every one
        for key in sorted(self.vault.iter_keys(CHECKPOINT_PREFIX), reverse=True):
            try:
                item = Checkpoint.from_bytes(self.vault.get(key))
            except (RecordingNotFound, CheckpointError):
                continue
            if self._signed(item):
                return item
        return None

    def _signed(self, checkpoint: Checkpoint) -> bool:
        return self.keyring.verify(
            canonical_json(checkpoint.payload()).encode(), checkpoint.signature
        )

    # -- writing --------------------------------------------------------------------------
    def write_due(self, now: datetime) -> Checkpoint | None:
        """Write a checkpoint of the head if one is due (see the module docstring).

        Raises:
            CheckpointError: the log no longer matches the last checkpoint (it was
                rewritten, or restored from an older backup without a restart): nothing
                is signed.
            StorageError: the catalog or the vault failed.
        """
        head = self.audit.head()
        if head is None:
            return None
        # The copy this writer cached only decides whether anything may be due (a cheap
        # tick); before signing or refusing, the vault's latest is read again: another
        # process (or host) may have signed since, and a checkpoint must name it.
        cached = self._last
        if cached is None or head.seq < cached.seq or self._due(head, cached, now):
            last = self._last = self.latest()
        else:
            return None
        last_seq = last.seq if last else 0
        if head.seq <= last_seq:
            if last is not None and head.seq < last_seq:
                raise CheckpointError(
                    f"the audit log ends at seq {head.seq} but checkpoint seq {last_seq} "
                    "was signed: records were removed (after a deliberate restore: "
                    "callvault audit checkpoint --restart)"
                )
            return None
        if not self._due(head, last, now):
            return None
        return self.write(head, last)

    def _due(self, head: AuditEntry, last: Checkpoint | None, now: datetime) -> bool:
        if last is None:
            return True
        return head.seq - last.seq >= self.every_records or (
            head.seq > last.seq and now - last.at >= timedelta(seconds=self.every_seconds)
        )

    def write(self, head: AuditEntry, last: Checkpoint | None) -> Checkpoint:
        """Check the records since ``last`` chain to it, then sign and store ``head``.

        Raises:
            CheckpointError: the log does not continue ``last``'s record.
            StorageError: the catalog or the vault failed.
        """
        self._check_chain(last, head)
        return self._store(
            Checkpoint(
                seq=head.seq,
                hash=head.hash,
                at=head.at,
                prev_seq=last.seq if last else 0,
                prev_digest=last.digest if last else "",
                signature="",
                epoch=last.epoch if last else 0,
            )
        )

    def restart(self, reason: str) -> Checkpoint:
        """Begin a new epoch at the current head after a deliberate restore of an older
        catalog backup: a signed checkpoint naming the last one (so nothing is hidden)
        and the reason. Checkpoints of the old epoch past the head are reported as
        discarded by ``verify``, never as intact; the ones at or below it must still
        match the log, which is checked here first.

        Raises:
            CheckpointError: an empty reason or log, or the log does not match the last
                checkpoint at or below its head (a rewrite, not a restore).
            StorageError: the catalog or the vault failed.
        """
        if not reason.strip():
            raise CheckpointError("a restart needs a reason")
        head = self.audit.head()
        if head is None:
            raise CheckpointError("the audit log is empty: nothing to restart from")
        last = self.latest()
        if last is None:
            return self.write(head, None)
        kept = [
            item
            for item in self.iter_checkpoints()
            if isinstance(item, Checkpoint)
            and item.epoch == last.epoch
            and item.seq <= head.seq
            and self._signed(item)
        ]
        self._check_chain(kept[-1] if kept else None, head)
        return self._store(
            Checkpoint(
                seq=head.seq,
                hash=head.hash,
                at=head.at,
                prev_seq=last.seq,
                prev_digest=last.digest,
                signature="",
                epoch=last.epoch + 1,
                restart={"reason": reason.strip()[:500], "kept_through_seq": head.seq},
            )
        )

    def _check_chain(self, anchor: Checkpoint | None, head: AuditEntry) -> None:
        after = 0
        expected = None
        if anchor is not None:
            previous = list(self.audit.iter_entries(after_seq=anchor.seq - 1, limit=1))
            if not previous or previous[0].seq != anchor.seq or previous[0].hash != anchor.hash:
                raise CheckpointError(
                    f"audit record seq {anchor.seq} no longer has the hash checkpoint seq "
                    f"{anchor.seq} signed: the log was rewritten; not signing it"
                )
            after, expected = anchor.seq, anchor.hash
        for entry in self.audit.iter_entries(after_seq=after, limit=max(0, head.seq - after)):
            if expected is not None and entry.prev_hash != expected:
                raise CheckpointError(
                    f"audit record seq {entry.seq} does not chain to seq {entry.seq - 1}; "
                    "not signing it"
                )
            expected = entry.hash

    def _store(self, unsigned: Checkpoint) -> Checkpoint:
        checkpoint = replace(
            unsigned, signature=self.keyring.sign(canonical_json(unsigned.payload()).encode())
        )
        key = checkpoint.key
        if self.vault.exists(key):
            # another writer signed this seq first: overwriting would orphan the
            # checkpoint that names its digest (a false tampering alarm in verify)
            raise CheckpointError(
                f"checkpoint {key} already exists (signed by another writer); not overwriting it"
            )
        written = self.vault.put(key, checkpoint.to_bytes(), tags=_TAGS)
        if self.vault.object_lock_enabled():
            refused = self.vault.set_legal_holds([key], on=True, versions={key: written.version_id})
            if refused:
                raise CheckpointError(f"the vault refused the legal hold of {key}")
        self._last = checkpoint
        if self.publish is not None:
            try:
                self.publish(checkpoint)
            except Exception:  # stored in the vault: the topic copy is a second copy
                log.exception("audit checkpoint seq %d not published", checkpoint.seq)
        return checkpoint

    # -- verifying ------------------------------------------------------------------------
    def verify(self) -> CheckpointVerification:
        """Check every checkpoint: signature, continuity (each names the previous one of
        its epoch, which must exist; an epoch's first names the last of the one before
        as a restart), and that the log's record at its seq has the signed hash (except
        checkpoints a later restart discarded: reported as notes).

        Raises:
            StorageError: the vault or the catalog cannot be read.
        """
        problems: list[str] = []
        notes: list[str] = []
        broken: list[int] = []
        epochs: dict[int, list[Checkpoint]] = {}
        count = 0
        for item in self.iter_checkpoints():
            count += 1
            if isinstance(item, CheckpointError):
                problems.append(f"unreadable checkpoint: {item}")
            elif not self._signed(item):
                problems.append(
                    f"checkpoint seq {item.seq}: signature does not verify (forged or edited)"
                )
                broken.append(item.seq)
            else:
                epochs.setdefault(item.epoch, []).append(item)
        head = self.audit.head()
        head_seq = head.seq if head else 0
        kept_through: dict[int, int] = {}  # epoch -> what the next restart kept of it
        for epoch in sorted(epochs, reverse=True):
            first = epochs[epoch][0]
            later = kept_through.get(epoch)
            if first.restart is not None and epoch > 0:
                kept = int(first.restart.get("kept_through_seq", first.seq))
                kept_through[epoch - 1] = min(kept, later) if later is not None else kept
        for epoch in sorted(epochs):
            by_seq = {item.seq: item for item in epochs[epoch]}
            previous_epoch = {item.seq: item for item in epochs.get(epoch - 1, [])}
            for index, item in enumerate(epochs[epoch]):
                self._check_continuity(item, index, by_seq, previous_epoch, problems, broken)
                if item.restart is not None and index == 0:
                    dropped = sum(1 for old in epochs.get(epoch - 1, []) if old.seq > item.seq)
                    notes.append(
                        f"restart at seq {item.seq} ({item.at.isoformat()}): "
                        f"{item.restart.get('reason', '')}; {dropped} checkpoint(s) after "
                        f"seq {item.seq} of epoch {epoch - 1} discarded"
                    )
                limit = kept_through.get(epoch)
                if limit is not None and item.seq > limit:
                    continue  # discarded by a deliberate restart (noted above)
                self._check_against_log(item, head_seq, by_seq, problems, broken)
        last = max((c.seq for items in epochs.values() for c in items), default=0)
        return CheckpointVerification(
            checkpoints=count,
            last_seq=last,
            problems=tuple(problems),
            first_broken_seq=min(broken) if broken else None,
            notes=tuple(notes),
        )

    @staticmethod
    def _check_continuity(
        item: Checkpoint,
        index: int,
        by_seq: dict[int, Checkpoint],
        previous_epoch: dict[int, Checkpoint],
        problems: list[str],
        broken: list[int],
    ) -> None:
        if item.restart is not None:
            if index != 0 or item.epoch == 0:
                problems.append(f"checkpoint seq {item.seq}: a restart inside an epoch")
                broken.append(item.seq)
                return
            prev = previous_epoch.get(item.prev_seq)
            if prev is None or prev.digest != item.prev_digest:
                problems.append(
                    f"restart at seq {item.seq} names checkpoint seq {item.prev_seq} of epoch "
                    f"{item.epoch - 1}, which is missing or differs (deleted or edited)"
                )
                broken.append(item.prev_seq)
            return
        if index == 0 and item.epoch > 0:
            problems.append(f"epoch {item.epoch} begins at seq {item.seq} without a restart")
            broken.append(item.seq)
            return
        if not item.prev_seq:
            return
        prev = by_seq.get(item.prev_seq)
        if prev is None:
            problems.append(
                f"checkpoint seq {item.seq} follows checkpoint seq {item.prev_seq}, "
                "which is missing from the vault (deleted)"
            )
            broken.append(item.prev_seq)
        elif prev.digest != item.prev_digest:
            problems.append(
                f"checkpoint seq {item.seq}: its predecessor seq {item.prev_seq} "
                "differs from the one it named"
            )
            broken.append(item.prev_seq)

    def _check_against_log(
        self,
        item: Checkpoint,
        head_seq: int,
        by_seq: dict[int, Checkpoint],
        problems: list[str],
        broken: list[int],
    ) -> None:
        if item.seq > head_seq:
            problems.append(
                f"checkpoint seq {item.seq} was signed but the log ends at seq "
                f"{head_seq}: records {head_seq + 1}..{item.seq} were removed"
            )
            broken.append(head_seq + 1)
            return
        found = list(self.audit.iter_entries(after_seq=item.seq - 1, limit=1))
        if not found or found[0].seq != item.seq:
            problems.append(f"checkpoint seq {item.seq}: the log has no record seq {item.seq}")
            broken.append(item.seq)
        elif found[0].hash != item.hash:
            problems.append(
                f"checkpoint seq {item.seq}: the log's record seq {item.seq} no longer has "
                f"the signed hash: records up to seq {item.seq} were rewritten"
                + (f" after seq {item.prev_seq}" if item.prev_seq in by_seq else "")
            )
            broken.append(item.seq)


def verify_audit(
    audit: AuditLog,
    checkpoints: AuditCheckpoints,
    progress: Callable[[int], None] | None = None,
) -> tuple[AuditVerification, CheckpointVerification]:
    """The chain (:meth:`AuditLog.verify`) and the checkpoints, both.

    Raises:
        AuditError / StorageError: the log or the vault cannot be read.
    """
    return audit.verify(progress=progress), checkpoints.verify()
