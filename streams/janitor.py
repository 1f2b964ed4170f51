"""The landing janitor: nothing is left behind in the landing area.

Ingest deletes a recording's landing audio, then its sidecar, only after the vault,
the catalog and the audit log succeeded. A worker that stops between the catalog
commit and those deletes leaves them behind, and when the broker then loses the
undelivered event no redelivery ever comes back for them. The janitor, run by the
landing reconciler (:meth:`streams.app.Worker.reconcile_landing`) over every stale
landing item, removes what is provably done with:

- **audio of a stored recording**: the file's claim (:mod:`storage.catalog.claims`)
  names a recording the catalog holds, no sidecar names another recording, and the
  vault object's sha256 equals the catalog's ``ciphertext_sha256`` (read back, so a
  lost or damaged object keeps the landing copy, logged and counted as
  ``mismatch``); then the audio and its sidecar are deleted and the claim released.
  Audio of a recording that already ended (expired, erased) goes without the check:
  its plaintext must not outlive it.
- **audio of a declined recording** whose claim is still held and whose audit record
  says the landing copy was to be destroyed.
- **a sidecar without audio**, once its recording is stored, declined or
  dead-lettered, or its file's claim was released; until then it is counted (the
  reconciler's backlog gauge counts it).

It never touches audio another pending event owns (a claim of a recording the
catalog does not hold, a dead-lettered file kept for an operator) or audio without a
claim (the reconciler re-announces it when it has a sidecar, or it stays in the
backlog for an operator).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from callvault.errors import is_unavailable
from storage.catalog.claims import ClaimState, LandingClaim
from storage.errors import LandingError, RecordingNotFound, StorageError
from storage.landing import StaleLanding
from storage.types import RecordingRow, RecordingState
from storage.vault import object_sha256
from streams.refs import landing_key
from streams.services import Services

__all__ = ["LandingJanitor", "JanitorReport"]

log = logging.getLogger(__name__)

#: Seconds a landing file's mtime may lie after its recording was settled (clock skew
#: between the PBX's file system and the catalog).
_CLOCK_SLACK = 2.0


@dataclass
class JanitorReport:
    """What one pass found: removed, kept (and why), and what may be re-announced."""

    removed_audio: int = 0
    removed_sidecars: int = 0
    kept_audio: int = 0  # backlog: audio no stored or declined recording accounts for
    kept_sidecars: int = 0  # sidecars without audio, their recording not settled yet
    mismatched: int = 0  # stored recordings whose vault object did not verify
    announceable: list[StaleLanding] = field(default_factory=list)

    @property
    def backlog(self) -> int:
        return self.kept_audio + self.kept_sidecars


class LandingJanitor:
    """See the module docstring. Blocking: run it off the event loop."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def sweep(self, stale: Iterable[StaleLanding]) -> JanitorReport:
        """Remove what is done with among ``stale`` (from ``iter_stale(...,
        orphan_sidecars=True)``); return the report. The audio with a sidecar and no
        claimed owner is returned in ``announceable`` for the reconciler.

        Raises:
            CallvaultError: an infrastructure failure (catalog, vault, landing store);
                what was removed before it stays removed.
        """
        services = self.services
        items = list(stale)
        report = JanitorReport()
        keys = {item.uri: landing_key(services.keyring, item.uri) for item in items}
        claims = services.claims.get(keys.values()) if keys else {}
        owners = {claim.recording_id for claim in claims.values()}
        rows = _rows(services, owners)
        for item in items:
            claim = claims.get(keys[item.uri])
            try:
                if item.has_audio:
                    self._audio(item, claim, rows, report)
                else:
                    self._sidecar(item, claim, rows, report)
            except (LandingError, StorageError) as exc:
                if is_unavailable(exc):
                    raise
                log.warning("landing janitor: item kept (%s)", type(exc).__name__)
                if item.has_audio:
                    report.kept_audio += 1
                else:
                    report.kept_sidecars += 1
        if report.removed_audio or report.removed_sidecars:
            log.warning(
                "landing janitor removed %d audio files and %d sidecars left behind by "
                "recordings already stored or settled",
                report.removed_audio,
                report.removed_sidecars,
            )
        return report

    # -- audio ------------------------------------------------------------------------
    def _audio(
        self,
        item: StaleLanding,
        claim: LandingClaim | None,
        rows: dict[str, RecordingRow],
        report: JanitorReport,
    ) -> None:
        services = self.services
        if claim is None or claim.state is not ClaimState.CLAIMED:
            # unclaimed (or released: a new file under a reused name): not ours to judge;
            # with a sidecar the reconciler may re-announce it, else an operator decides
            if item.has_sidecar and (claim is None or claim.state is ClaimState.RELEASED):
                report.announceable.append(item)
            else:
                report.kept_audio += 1
            return
        owner = claim.recording_id
        if item.has_sidecar and not self._sidecar_names(item, owner):
            report.kept_audio += 1  # a sidecar naming another recording: not this file
            return
        row = rows.get(owner)
        settled_at = row.created_at if row is not None else self._declined(owner)
        if settled_at is None:
            # pending (an upload claims its file at once): its event may have been lost
            if item.has_sidecar:
                report.announceable.append(item)
            else:
                report.kept_audio += 1
            return
        if time.time() - item.age_seconds > settled_at.timestamp() + _CLOCK_SLACK:
            # written after its recording was settled: a PBX reused the name for a new
            # call whose event has not claimed it yet; not the settled recording's file
            report.kept_audio += 1
            return
        if row is not None and row.state is RecordingState.STORED and not self._vault_verifies(row):
            report.mismatched += 1
            report.kept_audio += 1
            return
        services.landing.delete(item.uri)
        services.landing.delete_sidecar(item.uri)
        services.claims.set_state([(claim.landing_key, owner)], ClaimState.RELEASED)
        report.removed_audio += 1
        if item.has_sidecar:
            report.removed_sidecars += 1

    def _sidecar_names(self, item: StaleLanding, owner: str) -> bool:
        """Whether the sidecar beside ``item`` names ``owner`` (or names nobody)."""
        try:
            event = self.services.landing.read_sidecar(item.uri)
        except LandingError as exc:
            if is_unavailable(exc):
                raise
            return True  # an unusable sidecar names nobody
        rid = event.get("recording_id") if isinstance(event, dict) else None
        return not isinstance(rid, str) or rid == owner

    def _vault_verifies(self, row: RecordingRow) -> bool:
        try:  # hashed in 1 MiB ranges: constant memory for a 2-hour call, on S3 too
            digest: str | None = object_sha256(self.services.vault, row.object_key)
        except RecordingNotFound:
            digest = None
        if digest == row.ciphertext_sha256:
            return True
        log.warning(
            "landing janitor: the vault object of a stored recording does not match the "
            "catalog; its landing copy is kept (callvault vault check)"
        )
        return False

    def _declined(self, recording_id: str) -> datetime | None:
        """When the recording was declined with its landing copy to be destroyed, if so."""
        for entry in self.services.audit.iter_entries(
            recording_id=recording_id, action_prefix="ingest.declined"
        ):
            details = entry.details if isinstance(entry.details, dict) else {}
            if details.get("landing_destroyed"):
                return entry.at
        return None

    # -- sidecars without audio ---------------------------------------------------------
    def _sidecar(
        self,
        item: StaleLanding,
        claim: LandingClaim | None,
        rows: dict[str, RecordingRow],
        report: JanitorReport,
    ) -> None:
        services = self.services
        try:
            event = services.landing.read_sidecar(item.uri)
        except LandingError as exc:
            if is_unavailable(exc):
                raise
            event = None
        named = event.get("recording_id") if isinstance(event, dict) else None
        if claim is not None and claim.state is not ClaimState.RELEASED:
            rid: object = claim.recording_id
            if isinstance(named, str) and named and named != rid:
                rid = named  # a new sidecar under a reused name: its own recording decides
        else:
            rid = named  # a released claim says nothing of a sidecar written since
        owned = claim if claim is not None and claim.recording_id == rid else None
        settled = isinstance(rid, str) and bool(rid) and self._settled(rid, rows, owned)
        if not settled:
            report.kept_sidecars += 1
            return
        services.landing.delete_sidecar(item.uri)
        if owned is not None and owned.state is ClaimState.CLAIMED:
            services.claims.set_state(
                [(owned.landing_key, owned.recording_id)], ClaimState.RELEASED
            )
        report.removed_sidecars += 1

    def _settled(
        self, recording_id: str, rows: dict[str, RecordingRow], claim: LandingClaim | None
    ) -> bool:
        """Stored, declined or dead-lettered (the audio being gone, nothing is left to
        re-announce)."""
        services = self.services
        if recording_id in rows or recording_id in services.catalog.recording_ids_present(
            [recording_id]
        ):
            return True
        if claim is not None and claim.state is ClaimState.DEAD_LETTERED:
            return True
        if services.dead_letters.list(recording_id=recording_id, limit=1):
            return True
        return self._declined(recording_id) is not None


def _rows(services: Services, recording_ids: set[str]) -> dict[str, RecordingRow]:
    if not recording_ids:
        return {}
    present = services.catalog.recording_ids_present(recording_ids)
    found: dict[str, RecordingRow] = {}
    for rid in present:
        row = services.catalog.get_recording(rid)
        if row is not None:
            found[rid] = row
    return found
