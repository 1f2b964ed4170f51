"""The append-only, hash-chained audit log (table ``audit_log`` in the catalog database).

What a caller may rely on:

- Each record has a ``seq`` (1, 2, 3, ... without gaps) and
  ``hash = sha256(prev_hash || canonical_json(every field except hash))`` where
  ``prev_hash`` is the previous record's hash (64 zeros for seq 1) and canonical JSON
  has sorted keys, no spaces, UTF-8, and timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
  (see :func:`entry_hash`). The table ``audit_head`` anchors the last seq and hash, so
  a truncated tail or a record appended by raw SQL is noticed too.
- The record's ``tenant`` (whose auditors see it) is hashed too in **hash form 2**,
  which every record written since migration 14 carries (column ``hash_form``): moving
  such a record to another tenant breaks its hash. Records written before (form 1) are
  verified as they were written, tenant excluded: their tenant column is protected
  only by the database's access control. A record whose form was edited no longer
  matches its hash either (the form is hashed in form 2, and a form-2 hash never
  equals the form-1 one).
- Appends are serialized across threads, connections and processes: on SQLite inside
  ``BEGIN IMMEDIATE``, on PostgreSQL by row-locking ``audit_head`` (``FOR UPDATE``)
  before the chain head is read. The chain therefore never forks, however many workers
  append. An append is durable when :meth:`AuditLog.append` returns (or, with ``tx=``,
  when that transaction commits).
- ``on_append`` (constructor) is called with each entry after its transaction has
  committed, in seq order, on the appending thread. An exception it raises is logged
  and swallowed: the entries are committed regardless.
- :meth:`AuditLog.verify` recomputes every hash and checks seq continuity and the head
  anchor; it names the first broken record (edited field, deleted, reordered or
  inserted row).
- **No personal data in ``details``** (:func:`check_details`): keys that name a
  personal attribute (``customer_ref``, ``phone``, ``name``, ``email``, ``address``,
  ``card_number``, ... at any nesting depth, case and ``-``/``_`` insensitive, plus any
  key ending in ``email``/``phone``/``msisdn``) and string values that look like an
  e-mail address or a ``+``-prefixed (E.164) phone number are rejected with :class:`AuditError`.
  Use pseudonyms (``subject_ref``) and codes instead. ``details`` must be JSON
  (str keys; str, int, float, bool, None, lists, dicts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from storage.catalog.migrations import GENESIS_HASH
from storage.catalog.sql import Database, Row, Transaction, from_db_time, to_db_time
from storage.errors import AuditError, CatalogError
from storage.types import AuditEntry

__all__ = [
    "entry_json",
    "AuditDraft",
    "AuditLog",
    "AuditVerification",
    "GENESIS_HASH",
    "HASH_FORM",
    "canonical_json",
    "check_details",
    "entry_hash",
]

_log = logging.getLogger(__name__)

_PAGE = 2000
# The hash form new records are written in (see entry_hash); 1 = before migration 14.
HASH_FORM = 2

_PERSONAL_KEYS = frozenset(
    {
        "customerref",
        "customer",
        "customerid",
        "customername",
        "phone",
        "phonenumber",
        "telephone",
        "msisdn",
        "callerid",
        "callingnumber",
        "callednumber",
        "ani",
        "dnis",
        "name",
        "firstname",
        "lastname",
        "fullname",
        "surname",
        "email",
        "emailaddress",
        "mail",
        "address",
        "postaladdress",
        "street",
        "birthdate",
        "dateofbirth",
        "dob",
        "ssn",
        "cardnumber",
        "pan",
        "iban",
        "ipaddress",
    }
)
_PERSONAL_SUFFIXES = ("email", "phone", "phonenumber", "msisdn")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_E164 = re.compile(r"\+\d[\d \-().]{6,}\d")


def _normalized_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def check_details(details: Mapping[str, Any], *, _path: str = "details") -> None:
    """Reject details that would put personal data into the audit log.

    Raises:
        AuditError: a key names a personal attribute, a value looks like an e-mail
            address or phone number, or the value is not JSON (non-str key, NaN, object).
    """
    if not isinstance(details, Mapping):
        raise AuditError(f"{_path} must be a mapping, got {type(details).__name__}")
    for key, value in details.items():
        if not isinstance(key, str):
            raise AuditError(f"{_path} keys must be strings, got {key!r}")
        normalized = _normalized_key(key)
        if normalized in _PERSONAL_KEYS or normalized.endswith(_PERSONAL_SUFFIXES):
            raise AuditError(
                f"{_path}.{key}: personal data is not allowed in the audit log; "
                "record a pseudonym (subject_ref) or a code instead"
            )
        _check_value(value, f"{_path}.{key}")


def _check_value(value: Any, path: str) -> None:
    if isinstance(value, Mapping):
        check_details(value, _path=path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]")
    elif isinstance(value, str):
        if _EMAIL.search(value) or _E164.fullmatch(value.strip()):
            raise AuditError(
                f"{path}: value looks like an e-mail address or phone number; "
                "personal data is not allowed in the audit log"
            )
    elif value is not None and not isinstance(value, bool | int | float):
        raise AuditError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text, no NaN: the form every hash is taken over.

    Raises:
        AuditError: the value is not representable as canonical JSON.
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details are not JSON: {exc}") from exc


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """The entry as JSON-ready data (ISO 8601 time, hash included), as the HTTP API and
    the ``callvault.audit`` topic publish it; ``tenant`` and ``hash_form`` too, so a
    reader can recompute the hash (:func:`entry_hash`)."""
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "recording_id": entry.recording_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        "tenant": entry.tenant,
        "hash_form": entry.hash_form,
    }


def entry_hash(entry: AuditEntry) -> str:
    """The hash a record must carry: sha256(prev_hash || canonical JSON of the rest).

    Form 1 covers every field but ``tenant`` (and ``hash_form``); form 2 adds
    ``tenant`` and ``"form": 2``.

    Raises:
        AuditError: an unknown hash form, or details that are not JSON.
    """
    body: dict[str, Any] = {
        "seq": entry.seq,
        "at": to_db_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "recording_id": entry.recording_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    if entry.hash_form == HASH_FORM:
        body["tenant"] = entry.tenant
        body["form"] = HASH_FORM
    elif entry.hash_form != 1:
        raise AuditError(f"unknown audit hash form {entry.hash_form!r} (known: 1, {HASH_FORM})")
    digest = hashlib.sha256(entry.prev_hash.encode("ascii"))
    digest.update(canonical_json(body).encode("utf-8"))
    return digest.hexdigest()


@dataclass(frozen=True)
class AuditDraft:
    """What a caller wants recorded; the log adds seq, time and hashes.

    ``details`` is checked by :func:`check_details` when the draft is appended.
    """

    actor: str
    action: str
    outcome: str
    reason: str = ""
    recording_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditVerification:
    """Result of :meth:`AuditLog.verify`.

    ``checked`` counts the records found intact before the first problem;
    ``first_broken_seq`` is the seq of the first broken (or missing) record.
    """

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str = ""


_COLUMNS = (
    "seq, at, actor, action, outcome, reason, recording_id, details, prev_hash, hash, "
    "tenant, hash_form"
)
# ``tenant`` (migration 12) says whose auditors see a record: its recording's tenant,
# else the tenant its details name (None: the policy's default tenant). Since migration
# 14 it is hashed (form 2), so it is resolved before the hash is taken.
_INSERT = f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _validate_draft(draft: AuditDraft) -> dict[str, Any]:
    if not isinstance(draft, AuditDraft):
        raise AuditError(f"expected an AuditDraft, got {type(draft).__name__}")
    for name in ("actor", "action", "outcome"):
        value = getattr(draft, name)
        if not isinstance(value, str) or not value:
            raise AuditError(f"audit {name} must be a non-empty string, got {value!r}")
    if not isinstance(draft.reason, str):
        raise AuditError(f"audit reason must be a string, got {draft.reason!r}")
    if draft.recording_id is not None and not isinstance(draft.recording_id, str):
        raise AuditError(f"audit recording_id must be a string, got {draft.recording_id!r}")
    check_details(draft.details)
    # Normalize through JSON so the entry returned is exactly what verify will re-read.
    details: dict[str, Any] = json.loads(canonical_json(dict(draft.details)))
    return details


def _tenant_named(details: dict[str, Any]) -> str | None:
    tenant = details.get("tenant")
    return tenant if isinstance(tenant, str) and tenant else None


def _recording_tenants(tx: Transaction, recording_ids: set[str]) -> dict[str, str]:
    tenants: dict[str, str] = {}
    ids = sorted(recording_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for recording_id, tenant in tx.fetch_all(
            f"SELECT recording_id, tenant FROM recordings WHERE recording_id IN ({marks})",
            chunk,
        ):
            if tenant:
                tenants[str(recording_id)] = str(tenant)
    return tenants


def _entry_from_row(row: Row) -> AuditEntry:
    (seq, at, actor, action, outcome, reason, recording_id, details, prev_hash, hash_,
     tenant, hash_form) = row  # fmt: skip
    return AuditEntry(
        seq=int(seq),
        at=from_db_time(at),
        actor=actor,
        action=action,
        outcome=outcome,
        reason=reason,
        recording_id=recording_id,
        details=json.loads(details),
        prev_hash=prev_hash,
        hash=hash_,
        tenant=tenant,
        hash_form=int(hash_form),
    )


class AuditLog:
    """The hash-chained audit log stored in ``database`` (migrated by the catalog)."""

    def __init__(
        self,
        database: Database,
        *,
        on_append: Callable[[AuditEntry], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._database = database
        self._on_append = on_append
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- writing ------------------------------------------------------------------------

    def lock_head(self, tx: Transaction) -> tuple[int, str]:
        """Take the chain's write lock inside ``tx`` and return (last seq, last hash).

        Callers that check-then-write together with an append (the catalog) call this
        first, so their check and the append happen under the same lock.

        Raises:
            AuditError: the head row is missing (catalog not migrated) or unreadable.
        """
        try:
            row = tx.fetch_one(
                "SELECT seq, hash FROM audit_head WHERE id = 1" + tx.dialect.for_update
            )
        except CatalogError as exc:
            raise AuditError(
                f"cannot lock the audit log (is the catalog migrated?): {exc}"
            ) from exc
        if row is None:
            raise AuditError("the audit log has no head row; the catalog is not migrated")
        return int(row[0]), str(row[1])

    def append(self, draft: AuditDraft, *, tx: Transaction | None = None) -> AuditEntry:
        """Append one record; durable once this returns (or once ``tx`` commits).

        Raises:
            AuditError: invalid draft, personal data in ``details``, or the write failed.
        """
        return self.append_many([draft], tx=tx)[0]

    def append_many(
        self, drafts: Sequence[AuditDraft], *, tx: Transaction | None = None
    ) -> list[AuditEntry]:
        """Append records in order, atomically (all or none).

        Raises:
            AuditError: an invalid draft (nothing is written), or the write failed.
        """
        prepared = [(draft, _validate_draft(draft)) for draft in drafts]
        if not prepared:
            return []
        if tx is not None:
            return self._append_in(tx, prepared)
        try:
            with self._database.transaction() as own:
                return self._append_in(own, prepared)
        except CatalogError as exc:
            raise AuditError(f"audit append failed: {exc}") from exc

    def _append_in(
        self, tx: Transaction, prepared: list[tuple[AuditDraft, dict[str, Any]]]
    ) -> list[AuditEntry]:
        seq, prev_hash = self.lock_head(tx)
        at = self._clock()
        try:
            recording_tenants = _recording_tenants(
                tx, {d.recording_id for d, _ in prepared if d.recording_id is not None}
            )
        except CatalogError as exc:
            raise AuditError(f"audit append failed: {exc}") from exc
        entries: list[AuditEntry] = []
        for draft, details in prepared:
            seq += 1
            entry = AuditEntry(
                seq=seq,
                at=at,
                actor=draft.actor,
                action=draft.action,
                outcome=draft.outcome,
                reason=draft.reason,
                recording_id=draft.recording_id,
                details=details,
                prev_hash=prev_hash,
                tenant=recording_tenants.get(draft.recording_id or "") or _tenant_named(details),
                hash_form=HASH_FORM,
            )
            entry = replace(entry, hash=entry_hash(entry))
            entries.append(entry)
            prev_hash = entry.hash
        try:
            tx.executemany(
                _INSERT,
                [
                    (
                        e.seq,
                        to_db_time(e.at),
                        e.actor,
                        e.action,
                        e.outcome,
                        e.reason,
                        e.recording_id,
                        canonical_json(e.details),
                        e.prev_hash,
                        e.hash,
                        e.tenant,
                        e.hash_form,
                    )
                    for e in entries
                ],
            )
            tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev_hash))
        except CatalogError as exc:
            raise AuditError(f"audit append failed: {exc}") from exc
        if self._on_append is not None:
            tx.on_commit(lambda: self._publish(entries))
        return entries

    def _publish(self, entries: list[AuditEntry]) -> None:
        assert self._on_append is not None
        for entry in entries:
            try:
                self._on_append(entry)
            except Exception:  # the entry is committed; a failing hook must not undo that
                _log.exception("audit on_append hook failed for seq %d", entry.seq)

    # -- reading ------------------------------------------------------------------------

    def head(self) -> AuditEntry | None:
        """The last record, or ``None`` when the log is empty.

        Raises:
            AuditError: the log cannot be read.
        """
        rows = self._read(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1", ())
        return _entry_from_row(rows[0]) if rows else None

    def iter_entries(
        self,
        after_seq: int = 0,
        limit: int | None = None,
        recording_id: str | None = None,
        action_prefix: str | None = None,
        tenant: str | None = None,
        untenanted: bool = False,
    ) -> Iterator[AuditEntry]:
        """Records with seq > ``after_seq`` in seq order, optionally filtered: by
        ``tenant`` (the record's recording's tenant, else the one its details name), with
        ``untenanted`` also the records naming no tenant (the default tenant's).

        Reads in pages, so it holds no database cursor between items.

        Raises:
            AuditError: bad arguments or the log cannot be read.
        """
        if limit is not None and limit < 0:
            raise AuditError(f"limit must be >= 0, got {limit}")
        if after_seq < 0:
            raise AuditError(f"after_seq must be >= 0, got {after_seq}")
        where = ["seq > ?"]
        filters: list[Any] = []
        if recording_id is not None:
            where.append("recording_id = ?")
            filters.append(recording_id)
        if tenant is not None:
            where.append("(tenant = ? OR tenant IS NULL)" if untenanted else "tenant = ?")
            filters.append(tenant)
        if action_prefix:
            escaped = action_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            where.append("action LIKE ? ESCAPE '!'")
            filters.append(escaped + "%")
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        remaining = limit
        cursor = after_seq
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            rows = self._read(sql, (cursor, *filters, page))
            for row in rows:
                entry = _entry_from_row(row)
                cursor = entry.seq
                # SQLite's LIKE ignores ASCII case; the prefix match is exact.
                if action_prefix and not entry.action.startswith(action_prefix):
                    continue
                if remaining is not None:
                    remaining -= 1
                yield entry
                if remaining == 0:
                    return
            if len(rows) < page:
                return

    def _read(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            return self._database.fetch_all(sql, params)
        except CatalogError as exc:
            raise AuditError(f"cannot read the audit log: {exc}") from exc

    # -- verification -------------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> AuditVerification:
        """Recompute the whole chain; name the first broken record, if any.

        ``progress`` is called with the number of records checked so far, after each
        page and once at the end.

        Raises:
            AuditError: the log cannot be read (a broken chain is a result, not an error).
        """
        checker = _ChainChecker()
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT {_PAGE}"
        while True:
            rows = self._read(sql, (checker.last_seq,))
            for row in rows:
                broken = checker.check(row)
                if broken is not None:
                    return broken
            if progress is not None:
                progress(checker.checked)
            if len(rows) < _PAGE:
                break
        # Finish under the append lock, so head and tail are compared in one consistent view.
        try:
            with self._database.transaction() as tx:
                head_seq, head_hash = self.lock_head(tx)
                for row in tx.fetch_all(
                    f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq",
                    (checker.last_seq,),
                ):
                    broken = checker.check(row)
                    if broken is not None:
                        return broken
        except CatalogError as exc:
            raise AuditError(f"cannot read the audit log: {exc}") from exc
        if progress is not None:
            progress(checker.checked)
        return checker.finish(head_seq, head_hash)


class _ChainChecker:
    """Walks records in seq order and reports the first inconsistency."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self.checked = 0

    def _broken(self, seq: int, problem: str) -> AuditVerification:
        return AuditVerification(
            ok=False, checked=self.checked, first_broken_seq=seq, problem=problem
        )

    def check(self, row: Row) -> AuditVerification | None:
        expected = self.last_seq + 1
        seq = int(row[0])
        if seq != expected:
            return self._broken(
                expected, f"seq {expected} is missing (the next record found is seq {seq})"
            )
        try:
            entry = _entry_from_row(row)
        except (CatalogError, ValueError, TypeError) as exc:
            return self._broken(seq, f"seq {seq} is unreadable: {exc}")
        if entry.prev_hash != self.last_hash:
            return self._broken(
                seq, f"seq {seq}: prev_hash does not match the hash of seq {self.last_seq}"
            )
        try:
            recomputed = entry_hash(entry)
        except AuditError as exc:
            return self._broken(seq, f"seq {seq} cannot be hashed: {exc}")
        if recomputed != entry.hash:
            return self._broken(seq, f"seq {seq}: contents do not match its hash (edited)")
        self.last_seq, self.last_hash = seq, entry.hash
        self.checked += 1
        return None

    def finish(self, head_seq: int, head_hash: str) -> AuditVerification:
        if head_seq > self.last_seq:
            return self._broken(
                self.last_seq + 1,
                f"seq {self.last_seq + 1} is missing: the head records seq {head_seq} but the "
                f"log ends at seq {self.last_seq} (tail truncated)",
            )
        if head_seq < self.last_seq:
            return self._broken(
                head_seq + 1,
                f"seq {head_seq + 1} lies beyond the recorded head (seq {head_seq}): "
                "appended outside the audit log",
            )
        if head_hash != self.last_hash:
            return self._broken(
                head_seq, f"seq {head_seq}: hash differs from the one the head recorded"
            )
        return AuditVerification(ok=True, checked=self.checked)
