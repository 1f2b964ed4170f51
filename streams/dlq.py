"""The dead-letter queue an operator can act on: ``callvault.dlq`` + its catalog index.

A rejected record is kept whole, but nobody who reads the topic (or the catalog) can
read the personal data in it:

- the entry's **key** is the original record key; its **value** is the original value
  sealed, or empty when the sealed value is larger than :data:`INLINE_MAX` -- then it
  is a vault object (``dlq/<xx>/<entry id>.cvsr``) named by the ``cv-original``
  header, so an entry never exceeds the broker's message size;
- **sealing**: an event that names a tenant and a canonical ``customer_ref`` is sealed
  under that customer's subject key (the same pseudonym as ingest; the key is created
  if the customer has none yet) with :meth:`storage.crypto.KeyService.seal_named`
  (name ``dlq:<entry id>``), so erasing the customer shreds the original in the
  catalog, the vault and every copy of the topic alike (the erasure then removes the
  entry and the landing audio it kept: :mod:`streams.privacy.deadletters`); ``show``
  and ``replay`` of an entry shredded otherwise answer that the original was erased
  (:data:`ORIGINAL_ERASED`). Any other event (no
  or a non-canonical customer reference, not JSON) is sealed under the master keyring
  (:mod:`storage.crypto.sealed`) and lives as long as its entry;
- **headers** (all ASCII): ``cv-dlq-id``, ``cv-reason``, ``cv-detail`` (for humans,
  never a value), ``cv-source-topic``, ``cv-source-partition``, ``cv-source-offset``,
  ``cv-first-seen``, ``cv-attempts``, ``cv-recording-ref`` (keyed, see
  :mod:`streams.refs`), ``cv-value-size``, ``cv-sealing`` (``subject-v1`` or
  ``keyring-v1``),
  ``cv-original`` (``inline`` or ``vault:<key>``).

The entry id is a keyed digest of the source topic and the original value, so the same
poison record arriving again (a redelivery, a re-announcement) counts one more
``attempt`` of one entry. The catalog (``dead_letters``, :mod:`storage.catalog.deadletters`)
keeps what is needed to replay an entry even after the broker lost its topics.
``callvault dlq list|show|replay`` (:mod:`callvault.cli.dlq`) work on it: ``show`` is a
redacted view (no customer reference, landing URI or sha256), ``replay`` produces the
original key and value once more to its source topic and audits ``dlq.replayed``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.catalog.audit import AuditDraft, AuditLog
from storage.catalog.deadletters import DeadLetter, DeadLetterDraft, DeadLetterStore
from storage.catalog.sql import Database
from storage.crypto.keyring import Keyring
from storage.crypto.keys import KeyService
from storage.crypto.sealed import open_record, seal_record
from storage.customer import customer_ref_problem
from storage.errors import KeyDestroyed
from storage.vault import Vault
from streams.events import TENANT
from streams.ingest import IngestOutcome, redacted_event
from streams.refs import ref_or_dash
from streams.services import Services

__all__ = [
    "INLINE_MAX",
    "ORIGINAL_ERASED",
    "DlqMessage",
    "DlqSource",
    "DeadLetterQueue",
]

#: Largest sealed value carried inside a DLQ message (brokers default to 1 MB messages).
INLINE_MAX = 256 * 1024
SEALING = "keyring-v1"
SUBJECT_SEALING = "subject-v1"
#: Reason code of a dead letter whose original was shredded by its customer's erasure.
ORIGINAL_ERASED = "dlq-original-erased"
_PURPOSE = "dlq-entry"
_DETAIL_MAX = 200


@dataclass(frozen=True)
class DlqSource:
    """Where a dead-lettered record came from."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None


@dataclass(frozen=True)
class DlqMessage:
    """One message for ``callvault.dlq``."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        return (
            len(self.key or b"") + len(self.value) + sum(len(k) + len(v) for k, v in self.headers)
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("ascii")
        return None


def _ascii(text: str, limit: int = _DETAIL_MAX) -> bytes:
    return text[:limit].encode("ascii", "replace")


class DeadLetterQueue:
    """Records, shows and replays dead letters (blocking calls: run them in a thread)."""

    def __init__(
        self,
        *,
        store: DeadLetterStore,
        keyring: Keyring,
        keys: KeyService,
        vault: Vault,
        audit: AuditLog,
        database: Database,
        inline_max: int = INLINE_MAX,
    ) -> None:
        self.store = store
        self.database = database
        self.keyring = keyring
        self.keys = keys
        self.vault = vault
        self.audit = audit
        self.inline_max = inline_max

    @classmethod
    def from_services(cls, services: Services) -> DeadLetterQueue:
        """The queue over the services' dead-letter store, keyring, vault and catalog."""
        return cls(
            store=services.dead_letters,
            keyring=services.keyring,
            keys=services.keys,
            vault=services.vault,
            audit=services.audit,
            database=services.catalog.database,
        )

    def entry_id(self, source_topic: str, value: bytes) -> str:
        """The id of the entry for this record (same record, same id)."""
        digest = hashlib.sha256(value).hexdigest()
        return "dlq-" + self.keyring.pseudonymize("callvault:dlq", f"{source_topic}:{digest}")[:24]

    # -- recording ----------------------------------------------------------------------
    def record(
        self,
        items: list[tuple[IngestOutcome, DlqSource]],
        customers: Sequence[tuple[str, str] | None] | None = None,
    ) -> list[DlqMessage]:
        """Seal and index each dead-lettered record; return the messages to produce.

        ``customers`` names, per item, the ``(tenant, customer_ref)`` its payload
        belongs to when the caller knows it from another shape than an event (a
        Connect CTR: the mapping's binding tenant and customer attribute or
        ``CustomerEndpoint.Address``); a canonical one seals the item under that
        customer's subject key. Otherwise (None) the payload's own top-level
        ``tenant``/``customer_ref`` decide (:meth:`subject_of`).

        Raises:
            StorageError / KeyringError: the vault, catalog or keyring failed (retry).
        """
        drafts: list[DeadLetterDraft] = []
        named = list(customers) if customers is not None else [None] * len(items)
        if len(named) != len(items):
            raise ValueError("record: one customer (or None) per item")
        subjects = [
            self._subject(*customer) if customer is not None else None for customer in named
        ]
        subjects = [
            subject or self.subject_of(outcome.payload or b"")
            for subject, (outcome, _) in zip(subjects, items, strict=True)
        ]
        # New customers' keys of the whole batch in one commit, as ingest does.
        self.keys.ensure_subject_keys(subject for subject in subjects if subject is not None)
        for (outcome, source), subject in zip(items, subjects, strict=True):
            value = outcome.payload or b""
            entry_id = self.entry_id(source.topic, value)
            sealed, subject_key_id = self._seal(value, entry_id, subject)
            blob_key: str | None = None
            inline: bytes | None = sealed
            if len(sealed) > self.inline_max:
                blob_key = f"dlq/{entry_id[4:6]}/{entry_id}.cvsr"
                self.vault.put(blob_key, sealed, tags={"data-class": "dead-letter"})
                inline = None
            drafts.append(
                DeadLetterDraft(
                    entry_id=entry_id,
                    reason=outcome.reason,
                    detail=outcome.detail,
                    source_topic=source.topic,
                    source_partition=source.partition,
                    source_offset=source.offset,
                    original_key=source.key,
                    sealed_value=inline,
                    blob_key=blob_key,
                    value_size=len(value),
                    recording_id=outcome.recording_id,
                    tenant=outcome.tenant,
                    subject_key_id=subject_key_id,
                )
            )
        return [self.message(letter) for letter in self.store.record(drafts)]

    def subject_of(self, value: bytes) -> tuple[str, str] | None:
        """``(tenant, subject_ref)`` of the customer a dead-lettered event names, or None
        when it names no tenant or no canonical ``customer_ref`` (or is not JSON: also
        too deeply nested to parse, as a poison event may be)."""
        try:
            data = json.loads(value)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        return self._subject(data.get("tenant"), data.get("customer_ref"))

    def _subject(self, tenant: object, customer_ref: object) -> tuple[str, str] | None:
        """``(tenant, subject_ref)`` of a well-formed tenant and canonical reference."""
        if not isinstance(tenant, str) or not TENANT.match(tenant):
            return None
        if customer_ref_problem(customer_ref) is not None:
            return None
        assert isinstance(customer_ref, str)
        return tenant, self.keys.subject_ref(tenant, customer_ref)

    def _seal(
        self, value: bytes, entry_id: str, subject: tuple[str, str] | None
    ) -> tuple[bytes, str | None]:
        """The sealed value and the subject key id it is sealed under (None: master)."""
        if subject is None:
            return seal_record(self.keyring, value, purpose=_PURPOSE, name=entry_id), None
        for _ in range(3):  # an erasure may destroy the key between lookup and use
            record = self.keys.live_subject_key(subject[1])
            if record is None:
                self.keys.ensure_subject_keys([subject])
                continue
            try:
                sealed = self.keys.seal_named(
                    record.key_id,
                    _sealed_name(entry_id),
                    value,
                    content_type="application/octet-stream",
                )
            except KeyDestroyed:
                continue
            return sealed, record.key_id
        raise KeyDestroyed(f"dead letter {entry_id}: its customer's key keeps being destroyed")

    def message(self, letter: DeadLetter) -> DlqMessage:
        """The ``callvault.dlq`` message of an entry (module docstring)."""
        headers = [
            ("cv-dlq-id", _ascii(letter.entry_id)),
            ("cv-reason", _ascii(letter.reason)),
            ("cv-detail", _ascii(letter.detail)),
            ("cv-source-topic", _ascii(letter.source_topic)),
            ("cv-source-partition", _ascii(_number(letter.source_partition))),
            ("cv-source-offset", _ascii(_number(letter.source_offset))),
            ("cv-first-seen", _ascii(letter.first_seen.isoformat())),
            ("cv-attempts", _ascii(str(letter.attempts))),
            ("cv-recording-ref", _ascii(ref_or_dash(self.keyring, letter.recording_id))),
            ("cv-value-size", _ascii(str(letter.value_size))),
            ("cv-sealing", (SUBJECT_SEALING if letter.subject_key_id else SEALING).encode()),
            ("cv-original", _ascii(f"vault:{letter.blob_key}" if letter.blob_key else "inline")),
        ]
        return DlqMessage(letter.original_key, letter.sealed_value or b"", headers)

    # -- reading ------------------------------------------------------------------------
    def original(self, letter: DeadLetter) -> bytes:
        """The original value (unsealed). Personal data: never print it.

        Raises:
            KeyDestroyed: the customer was erased: the original is shredded (its message
                starts with :data:`ORIGINAL_ERASED`).
            IntegrityError / KeyringError / StorageError: it cannot be opened.
        """
        sealed = letter.sealed_value
        if sealed is None:
            assert letter.blob_key is not None
            sealed = self.vault.get(letter.blob_key)
        if letter.subject_key_id is None:
            return open_record(self.keyring, sealed, purpose=_PURPOSE, name=letter.entry_id)
        try:
            return self.keys.open_named(sealed, _sealed_name(letter.entry_id))
        except KeyDestroyed as exc:
            raise KeyDestroyed(_erased_message(letter)) from exc

    def erased(self, letter: DeadLetter) -> bool:
        """Whether the entry's original was shredded by its customer's erasure.

        Raises:
            CatalogError: the catalog cannot be read.
        """
        return letter.subject_key_id is not None and self.keys.key_destroyed(letter.subject_key_id)

    def summary(self, letter: DeadLetter) -> dict[str, Any]:
        """What ``callvault dlq list`` shows of an entry (no personal data)."""
        return {
            "id": letter.entry_id,
            "reason": letter.reason,
            "detail": letter.detail,
            "recording_ref": ref_or_dash(self.keyring, letter.recording_id),
            "tenant": letter.tenant,
            "source": {
                "topic": letter.source_topic,
                "partition": letter.source_partition,
                "offset": letter.source_offset,
            },
            "first_seen": letter.first_seen.isoformat(),
            "last_seen": letter.last_seen.isoformat(),
            "attempts": letter.attempts,
            "state": str(letter.state),
            "size": letter.value_size,
            "stored": "vault" if letter.blob_key else "inline",
            "sealing": "subject" if letter.subject_key_id else "keyring",
        }

    def show(self, letter: DeadLetter) -> dict[str, Any]:
        """The redacted view of an entry (``callvault dlq show``): the summary, the
        recording id, and the event with its customer reference, landing URI and sha256
        replaced by markers (``None`` when the original is not a JSON object, or was
        erased: then ``original`` is :data:`ORIGINAL_ERASED`, else ``available``)."""
        view = self.summary(letter)
        view["recording_id"] = letter.recording_id
        view["replayed_at"] = letter.replayed_at.isoformat() if letter.replayed_at else None
        view["replayed_by"] = letter.replayed_by
        try:
            original = self.original(letter)
        except KeyDestroyed:
            view["original"], view["event"] = ORIGINAL_ERASED, None
        else:
            view["original"], view["event"] = "available", redacted_event(original)
        return view

    # -- replaying ----------------------------------------------------------------------
    async def replay(
        self,
        letter: DeadLetter,
        *,
        by: str,
        produce: Callable[[str, bytes | None, bytes], Awaitable[None]],
        run: Callable[..., Awaitable[Any]],
    ) -> bool:
        """Produce the original record once more to its source topic (``produce(topic,
        key, value)``, awaited until the broker acknowledged it), then mark the entry
        replayed and audit ``dlq.replayed``. An entry already replayed is skipped
        (False). ``run(fn, *args)`` runs a blocking call off the event loop.

        Raises:
            KeyDestroyed: the original was erased with its customer (nothing produced).
        """
        current = await run(self.store.get, letter.entry_id)
        if current is None or current.state != "open":
            return False
        value = await run(self.original, current)
        await produce(current.source_topic, current.original_key, value)
        marked: bool = await run(self._mark, current, by)
        return marked

    def _mark(self, letter: DeadLetter, by: str) -> bool:
        with self.database.transaction() as tx:
            if not self.store.mark_replayed(letter.entry_id, by=by, tx=tx):
                return False
            self.audit.append_many(
                [
                    AuditDraft(
                        actor=by,
                        action="dlq.replayed",
                        outcome="ok",
                        reason=letter.reason,
                        recording_id=letter.recording_id,
                        details={"dlq_id": letter.entry_id, "attempts": letter.attempts},
                    )
                ],
                tx=tx,
            )
        return True


def _sealed_name(entry_id: str) -> str:
    return f"dlq:{entry_id}"


def _erased_message(letter: DeadLetter) -> str:
    return (
        f"{ORIGINAL_ERASED}: dead letter {letter.entry_id}: its original was erased with "
        "its customer (subject key destroyed); it can no longer be shown or replayed"
    )


def _number(value: int | None) -> str:
    return "" if value is None else str(value)
