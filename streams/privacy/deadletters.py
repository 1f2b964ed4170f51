"""An erased customer's dead letters go with them.

A dead letter whose event names the customer is sealed under their subject key
(:mod:`streams.dlq`), so the erasure's crypto-shredding makes its original unreadable
everywhere. Shredded, it can never be shown or replayed, yet it would stay ``open``
(counted by ``callvault_dlq_open`` and alerted on for good) with the recording id it
names, and the landing audio and sidecar it kept for a replay (the customer's voice and
their ``customer_ref`` in clear) would stay in the landing area. So before the keys are
destroyed, :func:`erase_dead_letters`:

1. opens each such letter's original (the key is still live) for the landing URIs it
   names (``audio.uri``, ``audio.legs[].uri``), and deletes those files with their
   sidecar, but only where they are provably this letter's audio: every file is
   claimed by its recording id (ingest claims verified audio it dead-letters,
   :mod:`storage.catalog.claims`), or, unclaimed, the sidecar beside the first file
   names that recording id. A file another call owns, or one nobody can tell, is kept
   and counted (``landing_files_kept``): an event may name any file;
2. deletes the letters' vault objects (large originals);
3. removes the letters from the catalog with one ``dlq.erased`` audit record (counts
   and the request id, no recording id) in one transaction.

Run again after a crash, it finds what is left; once the keys are destroyed an original
cannot be opened, so its landing files are only counted as kept.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection
from dataclasses import dataclass

from storage.catalog.audit import AuditDraft
from storage.catalog.claims import ClaimState
from storage.catalog.deadletters import DeadLetter
from storage.errors import KeyDestroyed, RecordingNotFound, StorageError
from storage.landing import LandingRef, LandingRejected
from streams.dlq import DeadLetterQueue
from streams.ingest.preparer import sidecar_owner
from streams.refs import landing_key
from streams.services import Services

__all__ = ["DeadLettersErased", "erase_dead_letters"]


@dataclass(frozen=True)
class DeadLettersErased:
    """What :func:`erase_dead_letters` removed."""

    removed: int = 0
    landing_files_removed: int = 0
    landing_files_kept: int = 0


def erase_dead_letters(
    services: Services,
    key_ids: Collection[str],
    *,
    actor: str,
    request_id: str,
    reason: str = "erasure-requested",
) -> DeadLettersErased:
    """Remove the dead letters sealed under ``key_ids`` and the landing audio they kept
    (module docstring); call it before destroying those keys.

    Raises:
        StorageError: the catalog, the vault or the landing store failed (run it again:
            what was done stays done).
    """
    letters = services.dead_letters.sealed_under(key_ids)
    if not letters:
        return DeadLettersErased()
    queue = DeadLetterQueue.from_services(services)
    removed_files = kept_files = 0
    for letter in letters:
        original = None
        with contextlib.suppress(KeyDestroyed, RecordingNotFound):
            original = queue.original(letter)
        uris = _landing_uris(original)
        if not uris:
            continue
        if original is not None and _discard_if_own(services, letter, uris):
            removed_files += len(uris)
        else:
            kept_files += len(uris)
    blobs = [letter.blob_key for letter in letters if letter.blob_key]
    if blobs:
        failed = services.vault.delete_many(blobs)
        if failed:
            raise StorageError(
                f"the vault could not delete {len(failed)} dead-letter object(s); retry"
            )
    done = DeadLettersErased(len(letters), removed_files, kept_files)
    with services.catalog.database.transaction() as tx:
        services.dead_letters.delete([letter.entry_id for letter in letters], tx=tx)
        services.audit.append_many(
            [
                AuditDraft(
                    actor=actor,
                    action="dlq.erased",
                    outcome="ok",
                    reason=reason,
                    details={
                        "request_id": request_id,
                        "dead_letters": done.removed,
                        "landing_files_removed": done.landing_files_removed,
                        "landing_files_kept": done.landing_files_kept,
                    },
                )
            ],
            tx=tx,
        )
    return done


def _landing_uris(original: bytes | None) -> list[str]:
    """The landing URIs an original event names (none when it is not an event)."""
    if original is None:
        return []
    try:
        event = json.loads(original)
    except (ValueError, RecursionError):
        return []
    audio = event.get("audio") if isinstance(event, dict) else None
    if not isinstance(audio, dict):
        return []
    legs = audio.get("legs")
    if isinstance(legs, list) and legs:
        uris = [leg.get("uri") for leg in legs if isinstance(leg, dict)]
    else:
        uris = [audio.get("uri")]
    return [uri for uri in uris if isinstance(uri, str) and uri]


def _discard_if_own(services: Services, letter: DeadLetter, uris: list[str]) -> bool:
    """Delete the files (other legs first, then the first with its sidecar) when they
    are provably the letter's own; whether they were."""
    rid = letter.recording_id
    if not rid:
        return False
    refs: list[LandingRef] = []
    for uri in uris:
        try:
            refs.append(services.landing.resolve(uri))
        except LandingRejected:
            return False  # outside the roots or malformed: nothing of ours to delete
    keys = [landing_key(services.keys.keyring, ref.uri) for ref in refs]
    claims = services.claims.get(keys)
    if claims:
        if len(claims) != len(keys) or any(c.recording_id != rid for c in claims.values()):
            return False  # another call's file (or only some legs claimed): kept
    elif sidecar_owner(services.landing, refs[0]) != rid:
        return False
    services.landing.discard(refs[0], *refs[1:])
    if claims:
        services.claims.set_state([(key, rid) for key in keys], ClaimState.RELEASED)
    return True
