"""The catalog: every fact about recordings, in SQL (SQLite embedded, PostgreSQL).

One thin SQL layer (:mod:`storage.catalog.sql`) and its migrations, one row mapper
(:mod:`storage.catalog.rows`), and one module per table family:

==========================  =====================================================
module                      holds
==========================  =====================================================
``catalog``                 recordings, subject keys, anonymous daily statistics
``audit``                   the hash-chained audit log
``endoflife``               schedules, contract terminations, deletion intents,
                            expiry and erasure tombstones
``holds``                   legal holds
``requests``                customers' privacy requests and their progress
``disclosures``             the disclosure ledger (third-party releases)
``restrictions``            customers whose recordings may not be used
``receipts``                signed deletion receipts
``stats``                   governance counts for the gauges (numbers only)
``evaluations``             QA evaluation assignments, sealed scores and notes
``claims``                  which recording owns which landing file; re-announcements
``deadletters``             the index of callvault.dlq (sealed originals, attempts)
``vaultsync``               the vault mirror queue (tags, S3 legal holds to write)
``holdsql``                 the SQL form of "an active hold covers this row"
``leases``                  who runs a singleton job (sweep, reconciler, key rotation)
``ratewindow``              the access rate guard's window, shared by every worker
``outbox``                  outbox cursors: how far the audit log reached its topic
==========================  =====================================================
"""

from __future__ import annotations

from storage.catalog.audit import AuditDraft, AuditLog, AuditVerification
from storage.catalog.catalog import Catalog, DailyStat, listing_cursor, open_catalog
from storage.catalog.claims import ClaimState, LandingClaim, LandingClaims
from storage.catalog.deadletters import (
    DeadLetter,
    DeadLetterDraft,
    DeadLetterState,
    DeadLetterStore,
)
from storage.catalog.disclosures import Disclosure, DisclosureLedger
from storage.catalog.endoflife import DeletionIntent, EndOfLifeStore, ObjectCleanup, ScheduleChange
from storage.catalog.evaluations import Assignment, AssignmentState, EvaluationStore
from storage.catalog.holds import HoldScope, HoldStore, LegalHold
from storage.catalog.leases import Lease, LeaseStore
from storage.catalog.outbox import OutboxCursor, OutboxCursors
from storage.catalog.ratewindow import AccessRateWindow
from storage.catalog.receipts import DeletionReceipt, ReceiptSigner, ReceiptStore
from storage.catalog.requests import PrivacyRequest, PrivacyRequestStore, RequestStatus
from storage.catalog.restrictions import SubjectRestrictions
from storage.catalog.sql import Database, SqlTimeouts, open_database

__all__ = [
    "AccessRateWindow",
    "OutboxCursor",
    "OutboxCursors",
    "SqlTimeouts",
    "Assignment",
    "AssignmentState",
    "EvaluationStore",
    "AuditDraft",
    "AuditLog",
    "AuditVerification",
    "Catalog",
    "ClaimState",
    "DailyStat",
    "Database",
    "DeadLetter",
    "DeadLetterDraft",
    "DeadLetterState",
    "DeadLetterStore",
    "DeletionIntent",
    "DeletionReceipt",
    "Disclosure",
    "DisclosureLedger",
    "EndOfLifeStore",
    "HoldScope",
    "HoldStore",
    "LandingClaim",
    "LandingClaims",
    "Lease",
    "LeaseStore",
    "LegalHold",
    "ObjectCleanup",
    "PrivacyRequest",
    "PrivacyRequestStore",
    "ReceiptSigner",
    "ReceiptStore",
    "RequestStatus",
    "ScheduleChange",
    "SubjectRestrictions",
    "listing_cursor",
    "open_catalog",
    "open_database",
]
