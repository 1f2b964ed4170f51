"""S3 objects announced by their store's notifications become recordings.

For each :class:`~streams.sources.notifications.ObjectNotice` of a created (or
re-tagged) object, :meth:`S3Source.handle`:

1. takes a notice about ``<audio>.event.json`` (a sidecar) as a notice about
   ``<audio>``: metadata written after the audio completes it;
2. hands objects under an Amazon Connect binding's prefix to
   :class:`~streams.sources.connect.ConnectSource`;
3. finds the S3 binding covering the object (none: ``unknown-source``; for the
   SeaweedFS filer feed, which reports every bucket, it is skipped), checks the object
   lies in a landing root, and reads the call fields from the object's user metadata
   (``x-amz-meta-call-id``...), its tags, and the sidecar next to it (later wins);
4. no call fields yet and no sidecar: skipped as ``waiting-for-metadata`` (the sidecar
   or the tags may still come; audio left alone counts in ``callvault_landing_backlog``);
5. the recording id is the fields' ``recording_id`` or ``s3-`` + a digest of bucket,
   key and ETag (the same object announced twice is the same recording; new content
   under the same key is a new one); one already in the catalog or mapped moments ago
   is skipped as ``duplicate`` without reading the audio;
6. otherwise the audio's sha256 is computed (streamed), the event built and checked
   (:func:`~streams.sources.base.build_event`), written as the object's sidecar (only
   when it changed, so the notice of that write is a no-op) and returned ``mapped``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from storage.catalog import Catalog
from storage.landing import SIDECAR_SUFFIX, Landing, LandingRejected
from streams.errors import SourceRefused
from streams.sources.base import (
    Recent,
    SkipReason,
    SourceOutcome,
    SourceReason,
    build_event,
    call_fields,
    format_of,
    read_sidecar,
    refuse,
)
from streams.sources.config import SourceBindings
from streams.sources.connect import ConnectSource
from streams.sources.notifications import ObjectNotice

__all__ = ["S3Source", "SOURCE", "derived_recording_id"]

SOURCE = "s3"


_PLACEHOLDER = "0" * 64


def derived_recording_id(bucket: str, key: str, etag: str | None) -> str:
    digest = hashlib.sha256(f"{bucket}/{key}\n{etag or ''}".encode()).hexdigest()
    return f"s3-{digest[:32]}"


class S3Source:
    """Maps object notices to events (see the module docstring). Thread-safe for one
    caller at a time; blocking (S3 calls), so callers run it off the event loop."""

    def __init__(
        self,
        *,
        bindings: SourceBindings,
        landing: Landing,
        catalog: Catalog,
        clock: Callable[[], datetime],
        connect: ConnectSource | None = None,
    ) -> None:
        self.bindings = bindings
        self.landing = landing
        self.catalog = catalog
        self.clock = clock
        self.connect = connect or ConnectSource(
            bindings=bindings, landing=landing, catalog=catalog, clock=clock
        )
        self.recent = Recent()

    def handle(self, notice: ObjectNotice, *, strict: bool = True) -> SourceOutcome:
        """What becomes of one notice. ``strict`` False (the SeaweedFS filer feed, which
        reports every bucket) skips objects no binding covers instead of refusing them.

        Raises:
            LandingError: S3 failed in a way worth retrying (not a refusal).
        """
        if not notice.created:
            return SourceOutcome.skipped(SOURCE, SkipReason.NOT_CREATED)
        key = notice.key.removesuffix(SIDECAR_SUFFIX)
        if self.bindings.connect_for_object(notice.bucket, key) is not None:
            return self.connect.on_recording(notice.bucket, key)
        binding = self.bindings.s3_for(notice.bucket, key)
        if binding is None:
            if not strict:
                return SourceOutcome.skipped(SOURCE, SkipReason.NOT_CREATED, "unbound bucket")
            return SourceOutcome.refused(
                SOURCE, refuse(SourceReason.UNKNOWN_SOURCE, "no S3 source covers this object")
            )
        try:
            return self._map(notice.bucket, key, binding.defaults)
        except SourceRefused as exc:
            return SourceOutcome.refused(SOURCE, exc)

    def _map(self, bucket: str, key: str, defaults: Any) -> SourceOutcome:
        uri = f"s3://{bucket}/{key}"
        try:
            ref = self.landing.resolve(uri)
            found = self.landing.describe(ref)
        except LandingRejected as exc:
            if exc.reason == "landing-missing":
                return SourceOutcome.skipped(SOURCE, SkipReason.GONE)
            raise refuse(exc.reason, "the object is not in a landing root") from None
        sidecar = read_sidecar(self.landing, ref)
        fields = call_fields(found.metadata, found.tags, sidecar)
        audio_format = fields.get("format") or format_of(key)
        if audio_format is None:
            return SourceOutcome.skipped(SOURCE, SkipReason.NOT_AUDIO)
        recording_id = str(
            fields.get("recording_id") or derived_recording_id(bucket, key, found.etag)
        )
        audio = {"uri": ref.uri, "format": audio_format, "sha256": fields.get("sha256")}
        try:  # every field checked before the audio is read
            build_event(
                fields, defaults, {**audio, "sha256": _PLACEHOLDER},
                recording_id=recording_id, now=self.clock(),
            )  # fmt: skip
        except SourceRefused as exc:
            if exc.reason == SourceReason.MISSING_METADATA and sidecar is None:
                return SourceOutcome.skipped(SOURCE, SkipReason.WAITING_METADATA, exc.detail)
            raise
        if recording_id in self.recent or self.catalog.recording_ids_present([recording_id]):
            return SourceOutcome.skipped(SOURCE, SkipReason.DUPLICATE, recording_id=recording_id)
        if audio["sha256"] is None:
            try:
                audio["sha256"], _ = self.landing.digest(ref)
            except LandingRejected as exc:
                if exc.reason == "landing-missing":
                    return SourceOutcome.skipped(SOURCE, SkipReason.GONE)
                raise refuse(exc.reason, "the object cannot be read as landing audio") from None
        event = build_event(fields, defaults, audio, recording_id=recording_id, now=self.clock())
        if sidecar != event:  # unchanged: the notice of our own write ends here
            self.landing.write_sidecar(ref, event)
        self.recent.add(recording_id)
        return SourceOutcome.mapped(SOURCE, event)
