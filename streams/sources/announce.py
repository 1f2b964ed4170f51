"""``callvault announce``: a PBX's end-of-recording hook (Asterisk MixMonitor's command,
FreeSWITCH's ``record_session`` post-process) as a source.

:func:`announce` claims the recording's file(s): each is moved (a rename, or a
durable copy across file systems) into the first ``file://`` landing root under a name
made of its sha256 (never the PBX's file name, which often holds the caller's number),
so the PBX cannot touch it again and a second announce of the same path finds nothing
(``landing-missing``). Then the event is built from the options
(:func:`~streams.sources.base.build_event`: the core path's validation), written as the
sidecar of the (first) file, for the reconciler, and returned; the CLI produces it.

One ``FILE`` is one recording (mono, or stereo with ``--channels 2 --channel-roles
customer,agent``); ``--leg FILE --role R`` (repeated) are one file per direction,
stored as one recording with a channel per leg (``audio.legs``). With legs, a ``FILE``
given as well is the mixed copy MixMonitor writes beside ``r()``/``t()``: it holds
nothing the legs do not, and is deleted once the event is out (an unmanaged copy of a
call would escape retention and erasure).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.landing import Landing, LandingRejected
from streams.sources.base import (
    CallDefaults,
    SourceOutcome,
    SourceReason,
    build_event,
    format_of,
    refuse,
)
from streams.sources.config import SourceBindings

__all__ = ["Leg", "announce", "SOURCE"]

SOURCE = "announce"
_ROLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class Leg:
    """One file of the recording; ``role`` is None for a single (mixed) file."""

    path: Path
    role: str | None = None


def _digest(path: Path, limit: int) -> str:
    hasher = hashlib.sha256()
    size = 0
    try:
        # O_NONBLOCK: a FIFO named as the recording is refused, never waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise refuse(
                    "landing-not-regular", f"{path.name} is a FIFO, socket or device, not a file"
                )
            while piece := handle.read(1 << 20):
                size += len(piece)
                if size > limit:
                    raise refuse("landing-too-large", f"{path.name} is larger than the limit")
                hasher.update(piece)
    except FileNotFoundError:
        raise refuse("landing-missing", f"{path} does not exist (announced already?)") from None
    except IsADirectoryError:
        raise refuse("uri-invalid", f"{path} is a folder, not a recording") from None
    except OSError as exc:
        raise refuse("landing-missing", f"{path} cannot be read: {exc.strerror}") from None
    return hasher.hexdigest()


def _defaults(bindings: SourceBindings, landing: Landing, tenant: str | None) -> CallDefaults:
    binding = bindings.announce_for(landing.roots[0].rstrip("/"))
    if binding is None:
        if tenant is None:
            raise refuse(
                SourceReason.UNKNOWN_SOURCE,
                "no [[announce]] source binds this landing root: give --tenant",
            )
        return CallDefaults(tenant=tenant)
    if tenant is not None and tenant != binding.defaults.tenant:
        raise refuse(
            SourceReason.TENANT_MISMATCH,
            "--tenant differs from the tenant this landing root is bound to",
        )
    return binding.defaults


def announce(
    landing: Landing,
    bindings: SourceBindings,
    *,
    file: Path | None,
    legs: Sequence[Leg],
    fields: Mapping[str, Any],
    tenant: str | None,
    clock: Callable[[], datetime],
) -> tuple[SourceOutcome, Path | None]:
    """Claim the files, build and check the event, write its sidecar.

    Returns the ``mapped`` outcome and the mixed copy to delete once the event is out
    (None without one).

    Raises:
        SourceRefused: ``unknown-source``/``tenant-mismatch`` (the binding),
            ``not-audio``, ``missing-metadata``/``invalid-metadata``, an event reason
            (``invalid-field``...) or a landing reason (``landing-missing``: the file is
            gone, ``landing-too-large``, ``uri-invalid``). Nothing is moved before every
            field has been checked.
        LandingError: a file could not be moved or the sidecar written.
    """
    defaults = _defaults(bindings, landing, tenant)
    if not legs and file is None:
        raise refuse(SourceReason.MISSING_METADATA, "give FILE or --leg FILE --role ROLE")
    parts = list(legs) if legs else [Leg(file)]  # type: ignore[arg-type]
    for part in parts:
        if part.role is not None and (not part.role or set(part.role) - _ROLE_CHARS):
            raise refuse(SourceReason.INVALID_METADATA, "a role is lower-case letters and '-'")
    if len(legs) == 1:
        raise refuse(SourceReason.INVALID_METADATA, "legs come in twos or more (one per direction)")
    audio_format = str(fields.get("format") or format_of(parts[0].path.name) or "")
    if not audio_format:
        raise refuse(SourceReason.NOT_AUDIO, f"{parts[0].path.name}: say --format")
    placeholder: dict[str, Any] = {"format": audio_format}
    if legs:
        placeholder["legs"] = [
            {"uri": f"file:///pending-{i}", "sha256": "0" * 64, "role": leg.role}
            for i, leg in enumerate(legs)
        ]
    else:
        placeholder.update(uri="file:///pending", sha256="0" * 64)
    recording_id = fields.get("recording_id") or fields.get("call_id")
    build_event(fields, defaults, placeholder, recording_id=recording_id, now=clock())
    digests = [_digest(part.path, landing.max_bytes) for part in parts]
    claimed = []
    for part, digest in zip(parts, digests, strict=True):
        suffix = part.path.suffix.lower() if part.path.suffix else f".{audio_format}"
        name = f"{digest[:40]}{'-' + part.role if part.role else ''}{suffix}"
        try:
            claimed.append(landing.adopt(part.path, name))
        except LandingRejected as exc:
            raise refuse(exc.reason, f"{part.path.name} cannot be claimed") from None
    audio: dict[str, Any] = {"format": audio_format}
    if legs:
        audio["legs"] = [
            {"uri": uri, "sha256": digest, "role": leg.role}
            for uri, digest, leg in zip(claimed, digests, legs, strict=True)
        ]
    else:
        audio.update(uri=claimed[0], sha256=digests[0])
    event = build_event(fields, defaults, audio, recording_id=recording_id, now=clock())
    landing.write_sidecar(claimed[0], event)
    return SourceOutcome.mapped(SOURCE, event), file if legs else None
