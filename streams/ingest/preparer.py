"""The heavy stage of ingest, one event at a time (:class:`AudioPreparer`): the landing
audio read and checked against the event's sha256, decoded within the declared call's
bounds, legs joined, PCI pauses silenced, then sealed and written to the vault. PCM and
G.711 WAV and headerless audio go chunk by chunk, compressed audio through a working
copy and ffmpeg, anything else (legs of mixed codecs, unusual WAV layouts) whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from callvault.errors import is_unavailable
from storage.audio import (
    FFMPEG_FORMATS,
    DecodedAudio,
    DecodeLimit,
    Layout,
    PcmStream,
    SilencePlan,
    decode,
    encode_wav,
    ffmpeg_decoder,
    join_legs,
    silence,
    wav_needs_ffmpeg,
)
from storage.audio_chunks import (
    StreamPlan,
    join_plans,
    plan_stream,
    read_head,
    stream_legs,
    stream_plaintext,
)
from storage.audio_store import (
    STORAGE_CODECS,
    StorageCodec,
    content_type_of,
    reencode_file,
    stored_label,
    transcode_file,
)
from storage.crypto.envelope import PieceReader, SupportsRead
from storage.crypto.keys import KeyService
from storage.errors import AudioError, AudioMismatch, LandingError
from storage.landing import Landing, LandingRef, LandingStream
from storage.mirror import recording_tags
from storage.types import RecordingRow
from storage.vault import Vault
from streams.errors import EventRejected
from streams.events import RecordingEvent, RejectReason
from streams.ingest.outcomes import (
    audio_rejection,
    claimed,
    landing_rejection,
    sha256_mismatch,
    work_unavailable,
)
from streams.ingest.prepared import Prepared
from streams.ingest.workdir import WORK_PREFIX, private_folder
from streams.metrics import Metrics


def object_key_for(keys: KeyService, tenant: str, recording_id: str) -> str:
    """Vault key of a recording: a keyed hash, so keys never reveal call or customer ids."""
    digest = keys.keyring.pseudonymize(tenant, f"object:{recording_id}")
    return f"rec/{tenant}/{digest[:2]}/{digest}.cvlt"


def _check_pauses(event: RecordingEvent, frames: int, rate: int, channels: int) -> None:
    """Every pause must fall inside the decoded audio and on channels it has: a pause
    that cannot be silenced where the event says means the audio is not what the event
    describes (a stereo file read as mono halves every time), so nothing is stored."""
    total_ms = -(-frames * 1000 // rate)
    for index, pause in enumerate(event.pci_pauses):
        if pause.start_ms >= total_ms:
            raise EventRejected(
                str(RejectReason.PCI_OUT_OF_RANGE),
                f"pci_pauses[{index}]: starts after the decoded audio ends ({total_ms} ms)",
            )
        if pause.channels is not None and max(pause.channels) >= channels:
            raise EventRejected(
                str(RejectReason.PCI_OUT_OF_RANGE),
                f"pci_pauses[{index}]: the audio has {channels} channel(s)",
            )


#: Formats :meth:`AudioPreparer._prepare_streamed` may handle without holding them.
_STREAMED = frozenset({"wav", "sln", "sln16", "ulaw", "mulaw", "alaw"})


class _Digested:
    """Landing streams read through their sha256, each to be the event's (``expected``;
    ``None``: a stream whose digest nobody claimed, read as it is and not hashed)."""

    def __init__(self, streams: Sequence[LandingStream], expected: Sequence[str | None]) -> None:
        self._streams = list(streams)
        self._expected = list(expected)
        self._digests = [None if e is None else hashlib.sha256() for e in self._expected]

    def head(self, index: int) -> bytes:
        """The first bytes of stream ``index`` (a WAV header's worth), digested."""
        head = read_head(self._streams[index])
        if (digest := self._digests[index]) is not None:
            digest.update(head)
        return head

    def reader(self, index: int) -> SupportsRead:
        """Stream ``index`` as ``read(n)``, everything read digested."""
        stream, digest = self._streams[index], self._digests[index]
        if digest is None:
            return stream
        update = digest.update

        class Digesting:
            def read(self, size: int = -1, /) -> bytes:
                piece = stream.read(size)
                update(piece)
                return piece

        return Digesting()

    def drain(self) -> None:
        """Digest the rest of every claimed stream, 1 MiB at a time (unclaimed ones are
        left unread)."""
        for stream, digest in zip(self._streams, self._digests, strict=True):
            while digest is not None and (piece := stream.read(1 << 20)):
                digest.update(piece)

    def matches(self) -> bool:
        return all(
            d is None or d.hexdigest() == e
            for d, e in zip(self._digests, self._expected, strict=True)
        )

    def finish(self, item: Prepared) -> None:
        """Every stream was read to its end: raise ``sha256-mismatch`` unless each is the
        event's audio (``item.verified`` then)."""
        if not self.matches():
            raise sha256_mismatch()
        item.verified = True

    def refused(self, item: Prepared, exc: EventRejected) -> None:
        """``exc`` refused the event before the files were read to the end. As on the
        whole-file path, a file that is not the event's is a ``sha256-mismatch`` whatever
        else is wrong with it (raised from here); files that are get claimed for the
        recording (``item.verified``), so the reconciler leaves them."""
        if item.verified or exc.reason == RejectReason.SHA256_MISMATCH:
            return
        self.drain()
        item.verified = self.matches()
        if not item.verified:
            raise sha256_mismatch() from exc


def _translated(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces`` with audio failures as rejections (they surface inside ``Vault.put``)."""
    try:
        yield from pieces
    except AudioError as exc:
        raise audio_rejection(exc) from exc


def sidecar_owner(landing: Landing, ref: LandingRef) -> str | None:
    """The recording id the sidecar beside ``ref`` names (its owner), or None: no
    sidecar, or an unusable one (it proves nothing either way).

    Raises:
        LandingError: the landing store is unavailable (worth retrying).
    """
    try:
        sidecar = landing.read_sidecar(ref)
    except LandingError as exc:
        if is_unavailable(exc):
            raise
        return None
    owner = sidecar.get("recording_id") if sidecar else None
    return owner if isinstance(owner, str) else None


class AudioPreparer:
    """Prepares one event's audio for the catalog commit: reads and checks it, seals it
    and writes it to the vault; the row of what was stored becomes ``item.row``. Shared
    by the pipeline's threads (:meth:`prepare` runs in its pool, or inline in the batch
    thread when :meth:`cpu_only`); it keeps no state between events."""

    def __init__(
        self,
        *,
        landing: Landing,
        vault: Vault,
        keys: KeyService,
        metrics: Metrics,
        clock: Callable[[], datetime],
        max_pcm_bytes: int,
        work_dir: Path,
    ) -> None:
        self.landing = landing
        self.vault = vault
        self.keys = keys
        self.metrics = metrics
        self.clock = clock
        self.max_pcm_bytes = max_pcm_bytes
        #: Working copies of compressed audio (plaintext), one private folder per
        #: recording (:mod:`streams.ingest.workdir`).
        self.work_dir = work_dir

    def _check_sidecar(self, item: Prepared) -> None:
        """A sidecar event beside the audio (written by ``POST /v1/recordings`` or the
        PBX) names the file's owner: an event of another recording id is refused."""
        owner = sidecar_owner(self.landing, item.ref)
        if owner is not None and owner != item.event.recording_id:
            raise claimed()

    def _read_verified(self, item: Prepared) -> list[bytes]:
        """The landing audio of every file (one per leg), each checked against its
        sha256 (``item.verified`` once all match), after checking that no sidecar names
        another owner."""
        self._check_sidecar(item)
        files = []
        for ref, digest in zip(item.refs, item.expected_digests(), strict=True):
            try:
                data = self.landing.read(ref)
            except LandingError as exc:
                if is_unavailable(exc):
                    raise  # the landing store is down: retried
                raise landing_rejection(exc) from exc
            if digest is not None and hashlib.sha256(data).hexdigest() != digest:
                where = "audio.sha256" if not item.event.audio.legs else "its leg's sha256"
                raise EventRejected(
                    str(RejectReason.SHA256_MISMATCH), f"landing audio does not match {where}"
                )
            files.append(data)
        item.verified = True
        return files

    def check_verified(self, item: Prepared) -> None:
        """What :meth:`_read_verified` checks, streaming: each file's sha256 is
        computed 1 MiB at a time (constant memory: a declined 2-hour call is checked,
        never read whole, before it is destroyed). A file whose digest nobody claimed is
        only opened (it must be there and be landing audio)."""
        self._check_sidecar(item)
        for ref, expected in zip(item.refs, item.expected_digests(), strict=True):
            try:
                with self.landing.open(ref) as stream:
                    digested = _Digested([stream], [expected])
                    digested.drain()
            except LandingError as exc:
                if is_unavailable(exc):
                    raise  # the landing store is down: retried
                raise landing_rejection(exc) from exc
            if not digested.matches():
                where = "audio.sha256" if not item.event.audio.legs else "its leg's sha256"
                raise EventRejected(
                    str(RejectReason.SHA256_MISMATCH), f"landing audio does not match {where}"
                )
        item.verified = True

    def cpu_only(self, item: Prepared) -> bool:
        """Whether preparing ``item`` only computes and writes locally: one landing file
        in a local root, a format read and sealed in Python (no ffmpeg, no other storage
        codec), a vault whose puts do not wait on the network."""
        return (
            not self.vault.puts_wait_on_network
            and not item.event.audio.legs
            and item.ref.path is not None
            and item.event.audio.format in _STREAMED
            and str(item.decision.storage_codec) not in STORAGE_CODECS
        )

    def prepare(self, item: Prepared) -> Prepared:
        """Store ``item``'s audio in the vault (its row becomes ``item.row``) by the path
        its format and storage codec take: streamed, through ffmpeg, or whole."""
        fmt = item.event.audio.format
        if item.event.audio.legs:
            if fmt in _STREAMED:
                with self.metrics.stage("stream"):
                    if self._prepare_streamed_legs(item):
                        return item
            return self.prepare_whole(item)
        codec = str(item.decision.storage_codec)
        if codec in STORAGE_CODECS:  # the retention class stores in its own codec
            with self.metrics.stage("stream"):
                self._prepare_compressed(item, STORAGE_CODECS[codec])
            return item
        path = "ffmpeg" if fmt in FFMPEG_FORMATS else "whole"
        with self.metrics.stage("stream"):
            if fmt in _STREAMED:
                path = self._prepare_streamed(item)
            if path == "ffmpeg":
                self._prepare_compressed(item)
                return item
        return item if path == "done" else self.prepare_whole(item)

    def _prepare_compressed(self, item: Prepared, target: StorageCodec | None = None) -> None:
        """Compressed audio (and GSM / ADPCM WAV), kept as sent in constant memory: the
        landing file is copied aside while its digest is checked, ffmpeg decodes it as a
        stream (bounded; the samples are only counted), and the copy is sealed and
        written chunk by chunk; around a PCI pause a second ffmpeg re-encodes the
        silenced samples in the same codec, rate, channels and bit rate. With a
        ``target`` codec (the retention class's ``storage_codec``) any format is
        transcoded to it instead, PCI pauses silenced on the way."""
        event = item.event
        self._check_sidecar(item)
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        layout = Layout(event.audio.sample_rate, event.audio.channels)
        fmt = event.audio.format
        with self._work_copy() as folder:
            sent = Path(folder) / f"sent.{fmt}"
            item.bytes_in = self.copy_verified(item, sent)
            try:
                decoder = ffmpeg_decoder(str(sent), fmt, layout=layout)
                with PcmStream(decoder, limit, what=fmt) as scan:
                    for _ in scan:
                        pass  # counted and bounded; kept as sent, not as samples
                codec = scan.codec or fmt
                layout.check(scan.sample_rate, scan.channels, f"{fmt} audio")
                rate, channels, frames = scan.sample_rate, scan.channels, scan.frames
                cuts = self._cuts(event, frames, rate, channels)
                stored = sent
                label = stored_label(fmt, codec)
                if target is not None:
                    options = target.options(channels)
                    stored = transcode_file(
                        sent, fmt, layout, cuts, options=options, muxer=target.muxer,
                        limit=limit, folder=Path(folder),
                    )  # fmt: skip
                    label = target.label
                    if target.decoded_rate:  # Opus decodes at 48 kHz, whatever it was fed
                        frames = frames * target.decoded_rate // rate
                        rate = target.decoded_rate
                elif cuts.cuts:
                    seconds = max(frames / rate, 0.001)
                    bit_rate = max(6000, round(item.bytes_in * 8 / seconds / 1000) * 1000)
                    stored = reencode_file(
                        sent, fmt, codec, cuts, bit_rate=bit_rate, limit=limit, folder=Path(folder)
                    )
            except AudioError as exc:
                raise audio_rejection(exc) from exc
            except OSError as exc:  # the work folder is full or gone: infrastructure
                raise work_unavailable(exc) from exc
            size = stored.stat().st_size
            with stored.open("rb") as plaintext:
                self._seal_and_put(
                    item,
                    plaintext,
                    size=size,
                    audio_format=label,
                    content_type=content_type_of(label),
                    frames=frames,
                    sample_rate=rate,
                    channels=channels,
                    redacted_ms=cuts.silenced_ms,
                )

    @contextlib.contextmanager
    def _work_copy(self) -> Iterator[str]:
        """A fresh private folder under :attr:`work_dir` (removed on the way out); a
        failure to create it is infrastructure (retried)."""
        private_folder(self.work_dir)
        try:
            holder = tempfile.TemporaryDirectory(
                prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=self.work_dir
            )
        except OSError as exc:
            raise work_unavailable(exc) from exc
        with holder as folder:
            yield folder

    def copy_verified(self, item: Prepared, target: Path) -> int:
        """Copy the landing file to ``target`` chunk by chunk, checking its sha256
        (``item.verified``); return its size. A failed write of the copy (disk full) is
        infrastructure (retried), not the event's fault."""
        try:
            with self.landing.open(item.ref) as stream, target.open("wb") as out:
                digested = _Digested([stream], item.expected_digests())
                reader = digested.reader(0)
                while piece := reader.read(1 << 20):
                    out.write(piece)
                size = stream.position
        except LandingError as exc:
            if is_unavailable(exc):
                raise
            raise landing_rejection(exc) from exc
        except OSError as exc:
            raise work_unavailable(exc) from exc
        if not digested.matches():
            raise sha256_mismatch()
        item.verified = True
        return size

    def _prepare_streamed(self, item: Prepared) -> str:
        """PCM / G.711 WAV and headerless audio: read, silence, encrypt and write chunk by
        chunk, in constant memory. Returns ``done``, or the path this file needs instead:
        ``ffmpeg`` (a codec only ffmpeg expands) or ``whole`` (an unusual WAV layout)."""
        event = item.event
        self._check_sidecar(item)
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        layout = Layout(event.audio.sample_rate, event.audio.channels)
        try:
            with self.landing.open(item.ref) as stream:
                digested = _Digested([stream], item.expected_digests())
                try:
                    head = digested.head(0)
                    try:
                        plan = plan_stream(
                            head, stream.size, event.audio.format, layout=layout, limit=limit
                        )
                    except AudioError as exc:
                        raise audio_rejection(exc) from exc
                    if plan is None:
                        return "ffmpeg" if wav_needs_ffmpeg(head) else "whole"
                    cuts = self._cuts(event, plan.frames, plan.sample_rate, plan.channels)
                    pieces = stream_plaintext(
                        plan, head, digested.reader(0), cuts, finish=lambda: digested.finish(item)
                    )
                    item.bytes_in = stream.size
                    self._put_streamed(item, plan, pieces, cuts)
                except EventRejected as exc:
                    digested.refused(item, exc)
                    raise
        except LandingError as exc:
            if is_unavailable(exc):
                raise  # the landing store is down: retried
            raise landing_rejection(exc) from exc
        return "done"

    def _prepare_streamed_legs(self, item: Prepared) -> bool:
        """Legs of PCM / G.711 WAV or headerless audio, interleaved chunk by chunk into one
        recording in constant memory (False: they need :meth:`prepare_whole`, e.g. legs
        of different codecs)."""
        event = item.event
        self._check_sidecar(item)
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        layout = Layout(event.audio.sample_rate, None)  # each leg is one mono direction
        try:
            with contextlib.ExitStack() as stack:
                streams = [stack.enter_context(self.landing.open(ref)) for ref in item.refs]
                digested = _Digested(streams, item.expected_digests())
                try:
                    heads, plans = [], []
                    for index, stream in enumerate(streams):
                        heads.append(digested.head(index))
                        try:
                            plan = plan_stream(
                                heads[-1], stream.size, event.audio.format, layout=layout,
                                limit=limit,
                            )  # fmt: skip
                        except AudioError as exc:
                            raise audio_rejection(exc) from exc
                        if plan is None:
                            return False
                        plans.append(plan)
                    if len({p.stored_codec for p in plans}) != 1:
                        return False  # mixed codecs: join_legs makes them 16-bit PCM
                    try:
                        joined = join_plans(plans)
                    except AudioError as exc:
                        raise audio_rejection(exc) from exc
                    cuts = self._cuts(event, joined.frames, joined.sample_rate, joined.channels)
                    readers = [digested.reader(i) for i in range(len(streams))]
                    pieces = stream_legs(
                        plans, heads, readers, cuts, finish=lambda: digested.finish(item)
                    )
                    item.bytes_in = sum(s.size for s in streams)
                    self._put_streamed(item, joined, pieces, cuts)
                except EventRejected as exc:
                    digested.refused(item, exc)
                    raise
        except LandingError as exc:
            if is_unavailable(exc):
                raise
            raise landing_rejection(exc) from exc
        return True

    def _put_streamed(
        self, item: Prepared, plan: StreamPlan, pieces: Iterator[bytes], cuts: SilencePlan
    ) -> None:
        """Seal and write the stored WAV ``pieces`` of ``plan`` as they are produced."""
        self._seal_and_put(
            item,
            PieceReader(_translated(pieces)),
            size=plan.plaintext_size,
            audio_format=plan.audio_format,
            content_type="audio/wav",
            frames=plan.frames,
            sample_rate=plan.sample_rate,
            channels=plan.channels,
            redacted_ms=cuts.silenced_ms,
        )

    def _cuts(self, event: RecordingEvent, frames: int, rate: int, channels: int) -> SilencePlan:
        """The PCI cuts over audio of this layout (see :func:`_check_pauses`)."""
        roles = event.audio.channel_roles
        if roles and len(roles) != channels:
            raise EventRejected(
                str(RejectReason.AUDIO_MISMATCH),
                f"audio.channel_roles names {len(roles)} channel(s), the audio has {channels}",
            )
        _check_pauses(event, frames, rate, channels)
        spans = [(p.start_ms, p.end_ms, p.channels) for p in event.pci_pauses]
        try:
            return SilencePlan.of(spans, sample_rate=rate, channels=channels, frames=frames)
        except AudioError as exc:
            raise EventRejected(str(RejectReason.PCI_OUT_OF_RANGE), str(exc)) from exc

    def _seal_and_put(
        self,
        item: Prepared,
        plaintext: SupportsRead,
        *,
        size: int,
        audio_format: str,
        content_type: str,
        frames: int,
        sample_rate: int,
        channels: int,
        redacted_ms: int,
    ) -> None:
        """Seal ``size`` bytes of ``plaintext`` and write them to the vault as they are
        sealed; the row of what was stored becomes ``item.row``."""
        event, decision = item.event, item.decision
        assert decision.retention_class is not None and decision.retain_until is not None
        sealing = self.keys.seal_recording_stream(
            recording_id=event.recording_id,
            tenant=event.tenant,
            subject_ref=item.subject_ref,
            plaintext=plaintext,
            size=size,
            content_type=content_type,
            subject_key_record=item.subject_key,
        )
        key = object_key_for(self.keys, event.tenant, event.recording_id)
        tags = recording_tags(
            purposes=decision.purposes,
            retention_class=decision.retention_class,
            retain_until=decision.retain_until,
            held=False,
        )
        # The pieces raise (sha256, truncation) before the object is complete: the vault
        # then discards what it wrote, and the event is dead-lettered.
        written = self.vault.put(key, sealing, tags=tags, durable=False)
        self.metrics.pci_redacted_seconds.inc(redacted_ms / 1000)
        item.row = self._row(
            item,
            key=key,
            subject_key_id=sealing.subject_key_id,
            ciphertext_sha256=sealing.sha256,
            stored_size=sealing.size,
            audio_bytes=size,
            audio_format=audio_format,
            duration_ms=frames * 1000 // sample_rate,
            sample_rate=sample_rate,
            channels=channels,
            redacted_ms=redacted_ms,
            version=written.version_id,
        )

    def _row(
        self,
        item: Prepared,
        *,
        key: str,
        subject_key_id: str,
        ciphertext_sha256: str,
        stored_size: int,
        audio_bytes: int,
        audio_format: str,
        duration_ms: int,
        sample_rate: int,
        channels: int,
        redacted_ms: int,
        version: str | None,
    ) -> RecordingRow:
        event, decision = item.event, item.decision
        assert decision.retention_class is not None and decision.retain_until is not None
        return RecordingRow(
            recording_id=event.recording_id,
            call_id=event.call_id,
            tenant=event.tenant,
            subject_ref=item.subject_ref,
            agent_id=event.agent_id,
            queue=event.queue,
            direction=event.direction,
            started_at=event.started_at,
            ended_at=event.ended_at,
            duration_ms=duration_ms,
            consent=event.consent,
            purposes=decision.purposes,
            retention_class=decision.retention_class,
            retain_until=decision.retain_until,
            object_key=key,
            subject_key_id=subject_key_id,
            ciphertext_sha256=ciphertext_sha256,
            stored_size=stored_size,
            audio_bytes=audio_bytes,
            audio_format=audio_format,
            sample_rate=sample_rate,
            channels=channels,
            channel_roles=event.audio.channel_roles,
            pci_pauses=tuple(
                {
                    "start_ms": p.start_ms,
                    "end_ms": p.end_ms,
                    "channels": list(p.channels or range(channels)),
                }
                for p in event.pci_pauses
            ),
            pci_redacted_ms=redacted_ms,
            created_at=self.clock(),
            restricted=item.restricted,
            object_version=version,
        )

    def prepare_whole(self, item: Prepared) -> Prepared:
        """Legs (joined into one recording) and WAVs of an unusual layout: decoded,
        silenced and encoded as the canonical WAV in memory."""
        event = item.event
        with self.metrics.stage("read"):
            files = self._read_verified(item)
        item.bytes_in = sum(len(data) for data in files)
        with self.metrics.stage("decode"):
            audio = self._decode(event, files)
            del files
        with self.metrics.stage("redact"):
            spans = [(p.start_ms, p.end_ms, p.channels) for p in event.pci_pauses]
            _check_pauses(event, audio.frames, audio.sample_rate, audio.channels)
            try:
                audio, redacted_ms = silence(audio, spans)
            except AudioError as exc:
                raise EventRejected(str(RejectReason.PCI_OUT_OF_RANGE), str(exc)) from exc
            wav, audio_format = encode_wav(audio)
        subject_ref = item.subject_ref
        with self.metrics.stage("encrypt"):
            sealed = self.keys.seal_recording(
                recording_id=event.recording_id,
                tenant=event.tenant,
                subject_ref=subject_ref,
                plaintext=wav,
                content_type="audio/wav",
                subject_key_record=item.subject_key,
            )
        decision = item.decision
        assert decision.retention_class is not None and decision.retain_until is not None
        key = object_key_for(self.keys, event.tenant, event.recording_id)
        tags = recording_tags(
            purposes=decision.purposes,
            retention_class=decision.retention_class,
            retain_until=decision.retain_until,
            held=False,  # a hold that covers it already is mirrored after the commit
        )
        with self.metrics.stage("vault"):
            # Group commit: the batch is flushed once before the catalog commit.
            written = self.vault.put(key, sealed.blob, tags=tags, durable=False)
        self.metrics.pci_redacted_seconds.inc(redacted_ms / 1000)
        item.row = self._row(
            item,
            key=key,
            subject_key_id=sealed.subject_key_id,
            ciphertext_sha256=hashlib.sha256(sealed.blob).hexdigest(),
            stored_size=len(sealed.blob),
            audio_bytes=len(wav),
            audio_format=audio_format,
            duration_ms=audio.duration_ms,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            redacted_ms=redacted_ms,
            version=written.version_id,
        )
        return item

    def _decode(self, event: RecordingEvent, files: list[bytes]) -> DecodedAudio:
        """The event's audio as one recording: each file decoded (bounded by the declared
        call; headerless audio at the declared layout), legs joined channel by channel."""
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        declared = event.audio
        # Each leg is one mono direction: the declared channel count is the recording's.
        layout = Layout(declared.sample_rate, None if declared.legs else declared.channels)
        try:
            decoded = [decode(data, declared.format, limit=limit, layout=layout) for data in files]
            audio = join_legs(decoded) if declared.legs else decoded[0]
            if declared.channel_roles and len(declared.channel_roles) != audio.channels:
                raise AudioMismatch(
                    f"audio.channel_roles names {len(declared.channel_roles)} channel(s), "
                    f"the audio has {audio.channels}"
                )
            limit.check(audio.frames, audio.sample_rate, audio.channels)
        except AudioError as exc:
            raise audio_rejection(exc) from exc
        return audio
