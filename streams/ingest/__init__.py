"""The ingest pipeline: a ``RecordingCompleted`` event becomes one encrypted,
purpose-tagged vault object, one catalog row and one "stored" audit record.

Order of effects for one batch (what makes crash-and-redeliver safe):

1. validate each event (within the bounds of :mod:`streams.bounds`); resolve its
   landing URI inside the landing roots; refuse a file another recording id claimed
   (``landing-claimed``, :mod:`storage.catalog.claims`);
2. drop events whose ``recording_id`` is already in the catalog (idempotency key):
   the landing copy is removed only when the stored recording's own claim names it;
3. consent ``declined``: verify the audio is the event's (sha256), claim it, audit
   the decision, then destroy the landing copy;
4. read -> sha256 check -> decode (bounded by the declared duration; headerless audio
   at the declared rate and channels, a container checked against them) -> join legs
   (``audio.legs``: one sample-aligned channel per file) -> silence PCI pauses on their
   channels -> encode -> encrypt -> vault put (:class:`AudioPreparer`: in a thread pool
   when it waits on the network or on ffmpeg, so I/O and C code overlap; one local file
   read and sealed in Python into a local vault in the batch thread meanwhile);
5. ONE catalog transaction claims the files, inserts the rows and their audit
   records (and the audit records of the rejections);
6. only then the landing copies are deleted and their claims released; the caller
   commits offsets after :meth:`IngestPipeline.process_batch` returns.

A crash anywhere before 5 leaves the landing copy, and at worst an object that the
redelivered event overwrites under the same key; after 5, the redelivered event is
a duplicate.

Failures are typed (see :mod:`callvault.errors`): an *infrastructure* failure (an
error that is, or was raised from, :class:`~callvault.errors.Unavailable`: vault,
catalog, keyring, landing store down) raises out of :meth:`IngestPipeline.process_batch`,
so offsets are not committed and the caller retries the batch. Anything else is
permanent for the event that caused it: it comes back as a ``dlq`` outcome with a
reason code (``internal-error`` and the exception type for an unexpected one) and
its landing audio is kept. A non-infrastructure failure of a batch-wide step is
retried event by event, so it is pinned on the event that causes it.

Modules: :mod:`~streams.ingest.pipeline` (:class:`IngestPipeline`: the batch, the
commit, declines and the DLQ outcome), :mod:`~streams.ingest.preparer`
(:class:`AudioPreparer`: step 4 for one event), :mod:`~streams.ingest.prepared` (what
one event carries between them), :mod:`~streams.ingest.outcomes` (:class:`IngestOutcome`,
:func:`redacted_event`, failures as reason codes), :mod:`~streams.ingest.workdir` (the
work folder of compressed audio's copies).
"""

from __future__ import annotations

from streams.ingest.outcomes import IngestOutcome, redacted_event
from streams.ingest.pipeline import IngestPipeline, decide_event
from streams.ingest.preparer import AudioPreparer, object_key_for
from streams.ingest.workdir import clear_work_folder, work_folder

__all__ = [
    "AudioPreparer",
    "IngestOutcome",
    "IngestPipeline",
    "clear_work_folder",
    "decide_event",
    "object_key_for",
    "redacted_event",
    "work_folder",
]
