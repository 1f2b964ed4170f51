"""Amazon Connect: a call recording in S3 plus its contact trace record, joined.

Amazon Connect writes each recorded contact to
``s3://<bucket>/connect/<instance alias>/CallRecordings/YYYY/MM/DD/<ContactId>_<time>_UTC.wav``
(8 kHz 16-bit PCM WAV, two channels: "The agent audio is stored in the right channel.
All incoming audio, including the customer and anyone conferenced in, is stored in
the left channel") and, separately, a contact trace record (CTR) to a Kinesis stream
(``callvault.connect-ctr`` on Kafka, fed by a Kinesis connector). The two meet here,
joined by the contact id, in whichever order they arrive:

- :meth:`ConnectSource.on_ctr`: the CTR is mapped (:func:`ctr_fields`). If the
  recording is already in the landing bucket, its sha256 is computed and the event is
  complete: ``mapped``. If not, the event without its sha256 waits as the
  recording's sidecar (``<recording>.event.json``, where the reconciler looks too):
  ``waiting-for-recording``.
- :meth:`ConnectSource.on_recording` (the recording's S3 notification, routed here by
  :class:`~streams.sources.s3.S3Source`): with a sidecar from the CTR, the event is
  completed: ``mapped``; without one, the recording waits for its CTR:
  ``waiting-for-ctr`` (audio no CTR ever names counts in ``callvault_landing_backlog``).

What maps to what (CTR field -> event field):

=============================================== =======================================
``ContactId``                                   ``recording_id`` (the file name starts with it)
``InitialContactId`` (else ``ContactId``)       ``call_id``
``InstanceARN``                                 the binding, so the tenant
``Attributes.<customer_attribute>`` (else       ``customer_ref``
``CustomerEndpoint.Address``)
``Agent.Username`` (else the agent ARN's id)    ``agent_id``
``Queue.Name`` (spaces etc. become ``-``)       ``queue`` (else the binding's)
``InitiationMethod``: INBOUND, TRANSFER,        ``direction``: inbound; OUTBOUND, CALLBACK,
QUEUE_TRANSFER                                  API: outbound
``Recordings[].StartTimestamp/StopTimestamp``,  ``started_at`` / ``ended_at``
else ``Agent.ConnectedToAgentTimestamp`` /
``DisconnectTimestamp``
``Attributes.<consent_attribute>``              ``consent`` (else the binding's)
``Recording.Location`` / ``Recordings[].Location`` ``audio.uri``; ``audio``: wav, 8000 Hz,
                                                2 channels, ``["customer", "agent"]``
=============================================== =======================================

Refused: a CTR that is not JSON or lacks ``ContactId``/``InstanceARN`` (``malformed``),
an instance no binding names or a location outside its prefix (``unknown-source``), a
recording named for another contact (``contact-mismatch``). Skipped: a contact that was
not recorded, or not a voice contact (``not-recorded``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from storage.catalog import Catalog
from storage.errors import LandingError
from storage.landing import Landing, LandingRef, LandingRejected
from streams.errors import SourceRefused
from streams.sources.base import (
    Recent,
    SkipReason,
    SourceOutcome,
    SourceReason,
    build_event,
    call_fields,
    check_event,
    read_sidecar,
    refuse,
    slug,
)
from streams.sources.config import ConnectBinding, SourceBindings

__all__ = ["ConnectSource", "ctr_fields", "SOURCE", "CHANNEL_ROLES"]

SOURCE = "connect"
#: Amazon Connect's stereo layout: customer (all incoming audio) left, agent right.
CHANNEL_ROLES = ("customer", "agent")
MAX_CTR_BYTES = 1 << 20
_OUTBOUND = frozenset({"OUTBOUND", "CALLBACK", "API"})
_PLACEHOLDER = "0" * 64


def _get(data: Mapping[str, Any], *path: str) -> Any:
    value: Any = data
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def _location(ctr: Mapping[str, Any]) -> str | None:
    recordings = ctr.get("Recordings")
    if isinstance(recordings, list):
        for item in recordings:
            if (
                isinstance(item, Mapping)
                and item.get("MediaStreamType", "AUDIO") == "AUDIO"
                and item.get("StorageType", "S3") == "S3"
                and isinstance(item.get("Location"), str)
            ):
                return str(item["Location"])
    location = _get(ctr, "Recording", "Location")
    return location if isinstance(location, str) and location else None


def _times(ctr: Mapping[str, Any]) -> tuple[Any, Any]:
    recordings = ctr.get("Recordings")
    if isinstance(recordings, list):
        for item in recordings:
            if isinstance(item, Mapping) and item.get("StartTimestamp"):
                return item.get("StartTimestamp"), item.get("StopTimestamp")
    started = _get(ctr, "Agent", "ConnectedToAgentTimestamp") or ctr.get(
        "ConnectedToSystemTimestamp"
    )
    return started or ctr.get("InitiationTimestamp"), ctr.get("DisconnectTimestamp")


def ctr_fields(
    ctr: Mapping[str, Any], binding: ConnectBinding
) -> tuple[dict[str, Any], str, str] | None:
    """The call fields of a CTR and its recording's bucket and key; None when the
    contact has no recording (or is not a voice contact).

    Raises:
        SourceRefused: ``malformed`` (no ``ContactId``), ``unknown-source`` (the location
            is not under the binding's prefix), ``contact-mismatch``.
    """
    contact = ctr.get("ContactId")
    if not isinstance(contact, str) or not contact:
        raise refuse(SourceReason.MALFORMED, "a CTR needs its ContactId")
    if ctr.get("Channel", "VOICE") != "VOICE":
        return None
    location = _location(ctr)
    if location is None or _get(ctr, "Recording", "Status") not in (None, "AVAILABLE"):
        return None
    bucket, _, key = location.removeprefix("s3://").partition("/")
    if not binding.covers(bucket, key):
        raise refuse(
            SourceReason.UNKNOWN_SOURCE, "the CTR's recording lies outside its binding's prefix"
        )
    if not key.rsplit("/", 1)[-1].startswith(contact):
        raise refuse(SourceReason.CONTACT_MISMATCH, "the recording is named for another contact")
    attributes = ctr.get("Attributes") if isinstance(ctr.get("Attributes"), Mapping) else {}
    assert isinstance(attributes, Mapping)
    agent = _get(ctr, "Agent", "Username")
    if not agent and isinstance(_get(ctr, "Agent", "ARN"), str):
        agent = str(_get(ctr, "Agent", "ARN")).rsplit("/", 1)[-1]
    queue = _get(ctr, "Queue", "Name")
    method = str(ctr.get("InitiationMethod") or "INBOUND").upper()
    started, ended = _times(ctr)
    fields = call_fields(
        {
            "recording_id": contact,
            "call_id": ctr.get("InitialContactId") or contact,
            "customer_ref": attributes.get(binding.customer_attribute)
            or _get(ctr, "CustomerEndpoint", "Address"),
            "agent_id": slug(str(agent)) if agent else None,
            "queue": slug(str(queue)) if isinstance(queue, str) and slug(queue) else None,
            "direction": "outbound" if method in _OUTBOUND else "inbound",
            "consent": attributes.get(binding.consent_attribute),
            "started_at": started,
            "ended_at": ended,
        }
    )
    return fields, bucket, key


class ConnectSource:
    """Joins CTRs and recordings (see the module docstring). Blocking: run it off the
    event loop."""

    def __init__(
        self,
        *,
        bindings: SourceBindings,
        landing: Landing,
        catalog: Catalog,
        clock: Callable[[], datetime],
    ) -> None:
        self.bindings = bindings
        self.landing = landing
        self.catalog = catalog
        self.clock = clock
        self.recent = Recent()

    def on_ctr(self, payload: bytes | str | Mapping[str, Any]) -> SourceOutcome:
        """One CTR (a Kafka message of the CTR topic).

        Raises:
            LandingError: S3 failed in a way worth retrying.
        """
        try:
            return self._on_ctr(payload)
        except SourceRefused as exc:
            return replace(SourceOutcome.refused(SOURCE, exc), customer=self.customer_of(payload))

    def customer_of(self, payload: bytes | str | Mapping[str, Any]) -> tuple[str, str] | None:
        """``(tenant, customer_ref)`` of a CTR as the mapping derives them (the binding's
        tenant; the binding's customer attribute, else ``CustomerEndpoint.Address``), or
        None when the CTR is not a JSON object of a bound instance or names no customer.
        The caller checks the reference is canonical (a dead letter's sealing)."""
        ctr: Any = payload
        if not isinstance(payload, Mapping):
            if len(payload) > MAX_CTR_BYTES:
                return None
            try:
                ctr = json.loads(payload)
            except (ValueError, UnicodeDecodeError, RecursionError):
                return None
        if not isinstance(ctr, Mapping) or not isinstance(ctr.get("InstanceARN"), str):
            return None
        binding = self.bindings.connect_for_instance(ctr["InstanceARN"])
        if binding is None:
            return None
        attributes = ctr.get("Attributes") if isinstance(ctr.get("Attributes"), Mapping) else {}
        assert isinstance(attributes, Mapping)
        ref = attributes.get(binding.customer_attribute) or _get(ctr, "CustomerEndpoint", "Address")
        return (binding.defaults.tenant, ref) if isinstance(ref, str) else None

    def _on_ctr(self, payload: bytes | str | Mapping[str, Any]) -> SourceOutcome:
        ctr: Any = payload
        if not isinstance(payload, Mapping):
            if len(payload) > MAX_CTR_BYTES:
                raise refuse(SourceReason.MALFORMED, f"CTR larger than {MAX_CTR_BYTES} bytes")
            try:
                ctr = json.loads(payload)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise refuse(SourceReason.MALFORMED, "the CTR is not JSON") from None
        if not isinstance(ctr, Mapping):
            raise refuse(SourceReason.MALFORMED, "a CTR must be a JSON object")
        arn = ctr.get("InstanceARN")
        if not isinstance(arn, str):
            raise refuse(SourceReason.MALFORMED, "a CTR needs its InstanceARN")
        binding = self.bindings.connect_for_instance(arn)
        if binding is None:
            raise refuse(SourceReason.UNKNOWN_SOURCE, "no Connect source binds this instance")
        mapped = ctr_fields(ctr, binding)
        if mapped is None:
            return SourceOutcome.skipped(SOURCE, SkipReason.NOT_RECORDED)
        fields, bucket, key = mapped
        recording_id = str(fields["recording_id"])
        if recording_id in self.recent or self.catalog.recording_ids_present([recording_id]):
            return SourceOutcome.skipped(SOURCE, SkipReason.DUPLICATE, recording_id=recording_id)
        ref = self._ref(bucket, key)
        audio = {
            "uri": ref.uri,
            "format": "wav",
            "sample_rate": 8000,
            "channels": 2,
            "channel_roles": list(CHANNEL_ROLES),
        }
        pending = build_event(
            fields, binding.defaults, {**audio, "sha256": _PLACEHOLDER}, now=self.clock()
        )
        del pending["audio"]["sha256"]
        try:
            sha256, _ = self.landing.digest(ref)
        except LandingRejected as exc:
            if exc.reason != "landing-missing":
                raise refuse(exc.reason, "the recording cannot be read as landing audio") from None
            self.landing.write_sidecar(ref, pending)  # the join waits beside the recording
            return SourceOutcome.skipped(
                SOURCE, SkipReason.WAITING_RECORDING, recording_id=recording_id
            )
        return self._complete(ref, pending, sha256, sidecar=None)

    def on_recording(self, bucket: str, key: str) -> SourceOutcome:
        """The recording's S3 notification (routed here by the S3 source).

        Raises:
            LandingError: S3 failed in a way worth retrying.
        """
        try:
            ref = self._ref(bucket, key)
            try:
                self.landing.describe(ref)
            except LandingRejected as exc:
                if exc.reason == "landing-missing":
                    return SourceOutcome.skipped(SOURCE, SkipReason.GONE)
                raise refuse(exc.reason, "the recording is not landing audio") from None
            sidecar = read_sidecar(self.landing, ref)
            if sidecar is None:
                return SourceOutcome.skipped(SOURCE, SkipReason.WAITING_CTR)
            recording_id = sidecar.get("recording_id")
            if not isinstance(recording_id, str) or not key.rsplit("/", 1)[-1].startswith(
                recording_id
            ):
                raise refuse(SourceReason.CONTACT_MISMATCH, "the sidecar is another contact's")
            if recording_id in self.recent or self.catalog.recording_ids_present([recording_id]):
                return SourceOutcome.skipped(
                    SOURCE, SkipReason.DUPLICATE, recording_id=recording_id
                )
            try:
                sha256, _ = self.landing.digest(ref)
            except LandingRejected as exc:
                if exc.reason == "landing-missing":
                    return SourceOutcome.skipped(SOURCE, SkipReason.GONE)
                raise refuse(exc.reason, "the recording cannot be read") from None
            return self._complete(ref, sidecar, sha256, sidecar=sidecar)
        except SourceRefused as exc:
            return SourceOutcome.refused(SOURCE, exc)

    def _ref(self, bucket: str, key: str) -> LandingRef:
        try:
            return self.landing.resolve(f"s3://{bucket}/{key}")
        except LandingRejected as exc:
            raise refuse(exc.reason, "the recording's bucket is not a landing root") from None

    def _complete(
        self,
        ref: LandingRef,
        pending: Mapping[str, Any],
        sha256: str,
        *,
        sidecar: Mapping[str, Any] | None,
    ) -> SourceOutcome:
        event = json.loads(json.dumps(pending))
        event["audio"]["sha256"] = sha256
        check_event(event, now=self.clock())
        if sidecar != event:
            try:
                self.landing.write_sidecar(ref, event)
            except LandingError:
                raise
        self.recent.add(str(event["recording_id"]))
        return SourceOutcome.mapped(SOURCE, event)
