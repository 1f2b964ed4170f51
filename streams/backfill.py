"""Backfill: bring an existing archive of recordings under governance (``callvault import``).

An archive is a folder (``/srv/old-calls``) or an S3 prefix (``s3://bucket/calls/``)
plus a manifest (CSV, JSON array, or JSON lines) with one row per file:

=============== ======== ==========================================================
column          required meaning
=============== ======== ==========================================================
file            yes      path of the audio relative to the archive root
recording_id    yes      the idempotency key (as in ``RecordingCompleted``)
call_id, tenant yes      as in the event
started_at      yes      ISO 8601 with offset
ended_at        yes      ISO 8601 with offset
agent_id, queue yes      as in the event
customer_ref    yes      canonical (storage.customer: NFC, no surrounding space), taken as
                         written; pseudonymized on import, never logged or reported
direction       yes      inbound / outbound / internal
consent         yes      notified / granted / declined
format          yes      wav, ulaw, ... (empty: taken from the file's extension)
purposes        no       ``;``-separated (CSV) or a list (JSON); empty: policy default
pci_pauses      no       ``start_ms-end_ms;...`` or a JSON list of {start_ms, end_ms[, channels]}
sha256          no       expected digest, checked as a live event's; empty: none checked
sample_rate     no       Hz (``audio.sample_rate``): what headerless files are read at
channels        no       1 or 2 (``audio.channels``): e.g. MixMonitor's ``D``-option ``.raw``
channel_roles   no       ``customer;agent`` (CSV) or a list (JSON): what each channel carries
=============== ======== ==========================================================

What a caller may rely on:

- Every row goes through the SAME pipeline as live calls
  (:meth:`streams.ingest.IngestPipeline.process_batch`, in batches): event
  validation, consent, landing-URI checks (the archive root is the only landing root,
  so ``..`` and symlinks out of it are refused), the manifest's sha256 (when it
  gives one), decoding, PCI redaction, encryption, vault, catalog and audit (actor
  ``import:<worker id>``).
- Originals are never deleted unless ``move=True``; then the original of a row
  stored or declined in this run is deleted after the catalog commit.
- One bad row never stops the import: it ends as ``failed`` with the pipeline's
  reason code (``landing-missing``, ``audio-undecodable``, ``audio-unsupported``,
  ``schema``, ``invalid-field``, ``sha256-mismatch``, ...) and, when it has a valid
  recording id, an ``ingest.rejected`` audit record. A read error worth retrying
  (S3 down, permissions) ends as ``failed``/``read-error`` and is not recorded.
  A row that cannot even be made into an event (nothing here foresaw it) ends as
  ``failed``/``internal-error``, is logged and not recorded either.
  Vault or catalog failures stop the import (:class:`~storage.errors.StorageError`);
  re-running resumes.
- Re-running is safe and cheap: rows whose recording id is in the catalog are
  ``skipped`` (``already-stored``) without reading the file, rows declined before
  are ``skipped`` (``already-declined``), and rows that failed in an earlier import
  are ``skipped`` (``previously-failed``) unless ``retry_failed=True``. A recording
  id that repeats within one manifest is a ``duplicate`` after its first success.
- One ``import.completed`` audit record per run (counts only).
- Malformed manifests (not a regular UTF-8 file of at most :data:`MAX_MANIFEST_BYTES`,
  not CSV/JSON, JSON nested too deep, required columns missing) raise
  :class:`ManifestError` before anything is imported.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from queue import Empty
from typing import TYPE_CHECKING, Any

from callvault.errors import CallvaultError, ConfigError, InputFileError, is_unavailable
from callvault.inputfiles import read_input_text
from streams.bounds import text_problem
from streams.errors import ManifestError
from streams.events import CALL_FIELDS, RECORDING_ID, SCHEMA_V1

if TYPE_CHECKING:
    from storage.landing import Landing
    from streams.services import Services

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "ManifestError",
    "RowOutcome",
    "ImportSummary",
    "read_manifest",
    "run_import",
    "run_import_workers",
]

log = logging.getLogger(__name__)

#: Manifest columns copied as they are into the event's fields of the same name.
_EVENT_COLUMNS = CALL_FIELDS
REQUIRED_COLUMNS = ("file", *_EVENT_COLUMNS, "consent", "format")
OPTIONAL_COLUMNS = ("purposes", "pci_pauses", "sha256", "sample_rate", "channels", "channel_roles")
STATUSES = ("stored", "duplicate", "declined", "skipped", "failed")
_PLACEHOLDER_SHA = "0" * 64  # no manifest sha256: the event claims none (``unclaimed``)
_PAUSE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_ACTOR_PREFIX = "import:"
#: Largest manifest read (about three million rows); a bigger archive is imported in parts.
MAX_MANIFEST_BYTES = 1 << 30
#: Rows per pipeline batch: one vault flush and one catalog commit each (32 made 0.52 of a
#: durable copy's pace at the median, 128 made 0.59-0.60: bench/import.py, 2026-12-03).
DEFAULT_BATCH_SIZE = 128


@dataclass(frozen=True)
class RowOutcome:
    """What became of one manifest row (one line of the ``--report`` file).

    ``status`` is one of :data:`STATUSES`; ``reason`` a stable code. Never carries the
    customer reference.
    """

    row: int  # 1-based data row number in the manifest
    file: str
    recording_id: str | None
    status: str
    reason: str = ""
    detail: str = ""
    bytes_in: int = 0

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("bytes_in")
        return json.dumps(data, sort_keys=True)


@dataclass
class ImportSummary:
    """Counts of one run; ``failed_by_reason`` includes previously failed rows skipped."""

    rows: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    seconds: float = 0.0

    def add(self, outcome: RowOutcome) -> None:
        self.rows += 1
        self.by_status[outcome.status] += 1
        self.bytes_in += outcome.bytes_in
        if outcome.status == "failed":
            self.failed_by_reason[outcome.reason] += 1
        if outcome.status == "skipped":
            self.skipped_by_reason[outcome.reason] += 1

    @property
    def incomplete(self) -> int:
        """Rows that are not under governance (failed now or earlier)."""
        return self.by_status["failed"] + self.skipped_by_reason["previously-failed"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            **{status: self.by_status[status] for status in STATUSES},
            "failed_by_reason": dict(sorted(self.failed_by_reason.items())),
            "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
        }


# -- manifest ----------------------------------------------------------------------------


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Read every row of a CSV / JSON / JSON-lines manifest.

    The format is taken from the extension (``.csv``, ``.json``, ``.jsonl``,
    ``.ndjson``) or, failing that, from the content.

    Raises:
        ManifestError: unreadable, not a regular file, over
            :data:`MAX_MANIFEST_BYTES`, not UTF-8, not CSV/JSON (or JSON nested too
            deep), rows not objects, or a required column missing (CSV: from the
            header; JSON: from every row).
    """
    text = _manifest_text(path)
    suffix = path.suffix.lower()
    head = text.lstrip()[:1]
    if suffix in (".jsonl", ".ndjson") or (suffix != ".csv" and suffix != ".json" and head == "{"):
        rows = _json_lines(path, text)
    elif suffix == ".json" or (suffix != ".csv" and head == "["):
        rows = _json_array(path, text)
    else:
        rows = _csv_rows(path, text)
    return rows


def _manifest_text(path: Path) -> str:
    try:
        limit = MAX_MANIFEST_BYTES
        return read_input_text(path, max_bytes=limit, what="manifest", encoding="utf-8-sig")
    except InputFileError as exc:
        raise ManifestError(str(exc)) from exc


def _json_array(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise ManifestError(f"manifest {path} is not valid JSON: nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise ManifestError(f"manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ManifestError(f"manifest {path}: a JSON manifest is an array of objects")
    _check_columns(path, {key for row in data for key in row}, bool(data))
    return data


def _json_lines(path: Path, text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            raise ManifestError(f"manifest {path} line {number}: nested too deep") from None
        except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
            raise ManifestError(f"manifest {path} line {number} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise ManifestError(f"manifest {path} line {number} is not a JSON object")
        rows.append(row)
    _check_columns(path, {key for row in rows for key in row}, bool(rows))
    return rows


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    if "\x00" in text:
        raise ManifestError(f"manifest {path} is neither CSV nor JSON (binary content)")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [name.strip() for name in (reader.fieldnames or [])]
        if not header:
            raise ManifestError(f"manifest {path} is empty: expected a CSV header or JSON")
        reader.fieldnames = header
        _check_columns(path, set(header), True)
        return [
            {
                # the customer reference as written: refused if not canonical, never stripped
                key: (value or "") if key == "customer_ref" else (value or "").strip()
                for key, value in row.items()
                if key is not None
            }
            for row in reader
        ]
    except csv.Error as exc:
        raise ManifestError(f"manifest {path} is not valid CSV: {exc}") from exc


def _check_columns(path: Path, present: set[str], have_rows: bool) -> None:
    if not have_rows:
        return
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        raise ManifestError(
            f"manifest {path} is missing required column(s): {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_COLUMNS)})"
        )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else "" if value is None else str(value)


def _raw(value: Any) -> str:
    """A customer reference exactly as the manifest holds it (storage.customer)."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def _purposes(value: Any) -> Any:
    if isinstance(value, list):
        return value or None
    text = _text(value)
    if not text:
        return None
    if text.startswith("["):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested too deep
            return text  # the pipeline rejects it (schema)
    return [p.strip() for p in re.split(r"[;,]", text) if p.strip()]


def _pci_pauses(value: Any) -> Any:
    if isinstance(value, list):
        return value
    text = _text(value)
    if not text:
        return None
    if text.startswith("["):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text  # the pipeline rejects it (schema)
    pauses = []
    for part in text.split(";"):
        match = _PAUSE.match(part)
        if match is None:
            return text  # not understood: the pipeline rejects it (schema)
        pauses.append({"start_ms": int(match[1]), "end_ms": int(match[2])})
    return pauses


def _recording_id(row: dict[str, Any]) -> str | None:

    rid = row.get("recording_id")
    return rid if isinstance(rid, str) and RECORDING_ID.match(rid) else None


# -- the archive ---------------------------------------------------------------------------


def _archive_landing(root: str, *, s3_client_factory: Callable[[], Any], max_bytes: int) -> Landing:
    """A Landing whose only root is the archive, and whose deletes are no-ops: the
    pipeline deletes landing copies, but an archive's originals stay unless moved
    (``remove_original``)."""
    from storage.landing import Landing, LandingRef

    class KeepOriginals(Landing):
        def delete(self, ref: LandingRef | str) -> None:
            return None

        def delete_sidecar(self, ref_or_uri: LandingRef | str) -> None:
            return None

        def discard(self, ref: LandingRef | str, *legs: LandingRef | str) -> None:
            return None

        def remove_original(self, uri: str) -> None:
            Landing.delete(self, uri)

    # An archive an operator chose, not a drop zone: backups may hard-link identical files.
    return KeepOriginals(
        [root], s3_client_factory=s3_client_factory, max_bytes=max_bytes, allow_hard_links=True
    )


def archive_root(source: str) -> str:
    """The landing-root URI of ``source`` (a folder path or an ``s3://bucket/prefix``).

    Raises:
        ConfigError: the folder does not exist.
    """
    if source.startswith("s3://"):
        return source if source.endswith("/") else source + "/"
    if source.startswith("file://"):
        source = source.removeprefix("file://")
    folder = Path(source).resolve()
    if not folder.is_dir():
        raise ConfigError(f"archive {source!r} is not a folder (or an s3://bucket/prefix)")
    return folder.as_uri()


def _row_uri(root: str, relative: str) -> str:
    """The URI of the archive file ``relative``. A name no event can carry (a lone
    surrogate) is left unencoded in it, for the pipeline to reject the row (bad text)."""
    if root.startswith("s3://") or text_problem(relative) is not None:
        return root + relative.lstrip("/") if relative else root
    base = Path(root.removeprefix("file://"))
    return (base / relative).as_uri() if relative else base.as_uri()


# -- the import ------------------------------------------------------------------------------


@dataclass
class _Pending:
    index: int
    row: dict[str, Any]
    file: str
    recording_id: str | None
    uri: str = ""
    sha256: str = ""
    claimed: bool = True  # the manifest gave the sha256 (else a placeholder, unchecked)


def run_import(
    services: Services,
    source: str,
    rows: Sequence[dict[str, Any]],
    *,
    move: bool = False,
    retry_failed: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_outcome: Callable[[RowOutcome], None] | None = None,
    progress: Callable[[int], None] | None = None,
    row_numbers: Sequence[int] | None = None,
    record_completion: bool = True,
) -> ImportSummary:
    """Import ``rows`` (from :func:`read_manifest`) of the archive at ``source``.

    ``on_outcome`` receives each row's outcome (in manifest order within a batch);
    ``progress(n)`` is called after each batch with the rows it finished.
    ``row_numbers`` are the manifest numbers of ``rows`` (default 1, 2, ...: a shard of
    :func:`run_import_workers` passes its own); ``record_completion=False`` leaves the
    ``import.completed`` audit record to the caller.

    Raises:
        ConfigError: bad ``source`` or ``batch_size``.
        StorageError: the vault, catalog or audit log failed (re-run to resume).
    """
    from storage.vault.s3 import make_s3_client
    from streams.ingest import IngestPipeline, clear_work_folder, work_folder
    from streams.metrics import Metrics

    if batch_size < 1:
        raise ConfigError("batch size must be at least 1")
    config = services.config
    root = archive_root(source)
    clear_work_folder(work_folder(config.data_dir))  # what a killed import left (plaintext)
    landing = _archive_landing(
        root,
        s3_client_factory=services.s3_client_factory or make_s3_client,
        max_bytes=config.max_audio_bytes,
    )
    actor = f"{_ACTOR_PREFIX}{config.worker_id}"
    pipeline = IngestPipeline(
        landing=landing,
        vault=services.vault,
        keys=services.keys,
        catalog=services.catalog,
        audit=services.audit,
        policy=services.policy,
        metrics=Metrics(),
        actor=actor,
        clock=services.clock,
        restrictions=services.restrictions,
        claims=services.claims,
        window=config.call_window,
        work_dir=work_folder(config.data_dir),
    )
    summary = ImportSummary()
    done_ids: set[str] = set()  # stored or declined in this run
    started = time.perf_counter()

    def emit(outcome: RowOutcome) -> None:
        summary.add(outcome)
        if outcome.status in ("stored", "declined") and outcome.recording_id:
            done_ids.add(outcome.recording_id)
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="import-probe") as probes:
            for batch in _batches(rows, batch_size, row_numbers):
                finished = _import_batch(
                    batch, root, landing, pipeline, services, probes, done_ids,
                    move=move, retry_failed=retry_failed, actor=actor,
                )  # fmt: skip
                for outcome in finished:
                    emit(outcome)
                if progress is not None:
                    progress(len(batch))
    finally:
        pipeline.close()
        summary.seconds = time.perf_counter() - started
        if record_completion:
            _record_completion(services, actor, summary, len(rows), move)
    return summary


def _record_completion(
    services: Services, actor: str, summary: ImportSummary, rows: int, move: bool
) -> None:
    from storage.catalog.audit import AuditDraft

    # If we are already failing, the original error matters more than this record.
    with contextlib.suppress(CallvaultError):
        services.audit.append(
            AuditDraft(
                actor=actor,
                action="import.completed",
                outcome="ok" if summary.rows == rows else "interrupted",
                details={**summary.as_dict(), "moved": move},
            )
        )


def run_import_workers(
    open_services: Callable[[], Services],
    source: str,
    rows: Sequence[dict[str, Any]],
    *,
    workers: int,
    move: bool = False,
    retry_failed: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_outcome: Callable[[RowOutcome], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """:func:`run_import` in ``workers`` processes (AES-GCM, sha256 and the G.711 codec
    hold the GIL: one process uses one core). Rows are sharded by recording id (rows of
    one id meet in one process, which sees the first one's fate), each process opens its
    own services with ``open_services`` and imports its shard; outcomes stream back to
    this process, which calls ``on_outcome``/``progress`` and writes the one
    ``import.completed`` record. The guarantees are those of :func:`run_import`: a
    re-run resumes whatever a crash of any process left.

    Nothing that starts threads may run in this process before (the children are forked).

    Raises:
        ConfigError: bad ``source``, ``batch_size`` or ``workers``.
        CallvaultError: what a worker process raised (the others finish their shard).
    """
    import multiprocessing

    if workers < 1:
        raise ConfigError("workers must be at least 1")
    archive_root(source)
    if workers == 1:
        services = open_services()
        try:
            return run_import(
                services, source, rows, move=move, retry_failed=retry_failed,
                batch_size=batch_size, on_outcome=on_outcome, progress=progress,
            )  # fmt: skip
        finally:
            services.close()
    shards: list[tuple[list[dict[str, Any]], list[int]]] = [([], []) for _ in range(workers)]
    for number, row in enumerate(rows, 1):
        rid = _recording_id(row)
        shard = (
            int.from_bytes(hashlib.sha256(rid.encode()).digest()[:4], "big") if rid else number
        ) % workers
        shards[shard][0].append(row)
        shards[shard][1].append(number)
    # The children inherit this process's modules: the pipeline's are loaded once, here.
    import storage.vault.s3  # noqa: F401
    import streams.ingest  # noqa: F401
    import streams.metrics  # noqa: F401

    context = multiprocessing.get_context("fork")
    queue: Any = context.Queue()

    def shard_main(index: int) -> None:
        shard_rows, numbers = shards[index]
        name = f"import-{index + 1}"
        finished: list[RowOutcome] = []  # a batch's outcomes, sent together

        def send_batch(_rows: int) -> None:
            queue.put(("rows", name, finished[:]))
            finished.clear()

        try:
            services = open_services()
            try:
                run_import(
                    services, source, shard_rows, move=move, retry_failed=retry_failed,
                    batch_size=batch_size, row_numbers=numbers, record_completion=False,
                    on_outcome=finished.append, progress=send_batch,
                )  # fmt: skip
            finally:
                services.close()
            queue.put(("done", name, None))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
            queue.put(("error", name, f"{type(exc).__name__}: {exc}"))

    summary = ImportSummary()
    started = time.perf_counter()
    processes = [
        context.Process(target=shard_main, args=(i,), name=f"import-{i + 1}", daemon=True)
        for i in range(workers)
        if shards[i][0]
    ]
    for process in processes:
        process.start()
    errors: list[str] = []
    finished: set[str] = set()
    ours: Services | None = None
    try:
        # for the import.completed record, opened while the shards work (if this fails,
        # it is tried again at the end, where its error is the one raised)
        with contextlib.suppress(CallvaultError):
            ours = open_services()
        while len(finished) < len(processes):
            try:
                kind, name, payload = queue.get(timeout=1.0)
            except Empty:  # a process killed outright sends nothing: notice it is gone
                for process in processes:
                    if not process.is_alive() and process.name not in finished:
                        finished.add(process.name)
                        errors.append(f"{process.name} died (exit {process.exitcode})")
                continue
            if kind == "rows":
                for outcome in payload:
                    summary.add(outcome)
                    if on_outcome is not None:
                        on_outcome(outcome)
                if progress is not None:
                    progress(len(payload))
                continue
            finished.add(name)
            if kind == "error":
                errors.append(f"{name}: {payload}")
    finally:
        for process in processes:
            if process.is_alive() and process.name not in finished:
                process.terminate()  # this process is failing (e.g. Ctrl-C)
            process.join(30)
        summary.seconds = time.perf_counter() - started
        ours = ours or open_services()
        try:
            _record_completion(
                ours, f"{_ACTOR_PREFIX}{ours.config.worker_id}", summary, len(rows), move
            )
        finally:
            ours.close()
    if errors:
        raise CallvaultError(f"{len(errors)} import process(es) stopped: {'; '.join(errors)}")
    return summary


def _batches(
    rows: Sequence[dict[str, Any]], size: int, numbers: Sequence[int] | None = None
) -> Iterator[list[_Pending]]:
    """Batches of at most ``size`` rows, never two rows with one recording id together
    (the second must see the first's fate)."""
    batch: list[_Pending] = []
    ids: set[str] = set()
    for index, row in zip(numbers or range(1, len(rows) + 1), rows, strict=True):
        rid = _recording_id(row)
        if len(batch) >= size or (rid is not None and rid in ids):
            yield batch
            batch, ids = [], set()
        batch.append(_Pending(index, row, _text(row.get("file")), rid))
        if rid is not None:
            ids.add(rid)
    if batch:
        yield batch


def _previous(services: Services, rid: str) -> tuple[str, str] | None:
    """(status, reason) of an earlier run's decision about ``rid``, from the audit log."""
    failed: tuple[str, str] | None = None
    for entry in services.audit.iter_entries(recording_id=rid, action_prefix="ingest."):
        if entry.action == "ingest.declined":
            return ("declined", "already-declined")
        if entry.action == "ingest.rejected" and entry.actor.startswith(_ACTOR_PREFIX):
            failed = ("failed", entry.reason)
    return failed


def _import_batch(
    batch: list[_Pending],
    root: str,
    landing: Any,
    pipeline: Any,
    services: Services,
    probes: ThreadPoolExecutor,
    done_ids: set[str],
    *,
    move: bool,
    retry_failed: bool,
    actor: str,
) -> list[RowOutcome]:
    from storage.errors import LandingError
    from storage.landing import LandingRejected

    results: dict[int, RowOutcome] = {}

    def finish(
        item: _Pending, status: str, reason: str = "", detail: str = "", size: int = 0
    ) -> None:
        results[item.index] = RowOutcome(
            item.index, item.file, item.recording_id, status, reason, detail, size
        )

    # 1. what earlier runs (or earlier rows of this run) already decided
    ids = [p.recording_id for p in batch if p.recording_id is not None]
    present = services.catalog.recording_ids_present(ids) if ids else set()
    todo: list[_Pending] = []
    for item in batch:
        rid = item.recording_id
        if rid is not None and rid in done_ids:
            finish(
                item,
                "duplicate",
                "duplicate-row",
                "an earlier row of this manifest has this recording_id",
            )
        elif rid is not None and rid in present:
            finish(item, "skipped", "already-stored")
        else:
            previous = _previous(services, rid) if rid is not None else None
            if previous is not None and previous[0] == "declined":
                finish(item, "skipped", "already-declined")
            elif previous is not None and not retry_failed:
                finish(item, "skipped", "previously-failed", f"failed before: {previous[1]}")
            else:
                todo.append(item)

    # 2. locate the audio. A manifest sha256 is the event's claim, checked as a live
    # event's; without one the file is opened (there, readable, landing audio: a read
    # error is this row's, retried next run) and the pipeline takes it as it is, hashing
    # it nowhere (the digest was only ever checked, never kept).
    def locate(item: _Pending) -> _Pending:
        item.uri = _row_uri(root, item.file)
        given = _text(item.row.get("sha256")).lower()
        if given:
            item.sha256 = given
            return item
        item.sha256, item.claimed = _PLACEHOLDER_SHA, False
        if text_problem(item.file) is not None:
            return item  # not a name to open: the pipeline rejects the row (bad text)
        try:
            with landing.open(item.uri):
                pass
        except LandingRejected:
            pass  # the pipeline rejects it with the same reason
        return item

    if root.startswith("s3://"):  # a probe waits on the network: in parallel
        located = [probes.submit(locate, item).result for item in todo]
    else:
        located = [functools.partial(locate, item) for item in todo]
    events: list[dict[str, Any]] = []
    sent: list[_Pending] = []
    for item, result in zip(todo, located, strict=True):
        try:
            result()
            event = _event(item, SCHEMA_V1)
        except LandingError as exc:  # not a verdict on the row: retry it next run
            finish(item, "failed", "read-error", str(exc))
            continue
        except Exception as exc:  # a row nothing above foresaw: never the whole import
            if is_unavailable(exc):
                raise
            log.error("manifest row %d could not be read (%s)", item.index, type(exc).__name__)
            finish(item, "failed", "internal-error", f"{type(exc).__name__} reading the row")
            continue
        events.append(event)
        sent.append(item)

    # 3. the same pipeline as live calls
    if events:
        unclaimed = [n for n, item in enumerate(sent) if not item.claimed]
        outcomes = pipeline.process_batch(events, unclaimed=unclaimed)
        for item, outcome in zip(sent, outcomes, strict=True):
            if outcome.status == "dlq":
                finish(item, "failed", outcome.reason, outcome.detail)
            elif outcome.status == "duplicate":
                finish(item, "duplicate", "already-stored")
            else:
                finish(item, outcome.status, outcome.reason, size=outcome.bytes_in)
                if move:
                    landing.remove_original(item.uri)
    return [results[item.index] for item in batch]


def _event(item: _Pending, schema: str) -> dict[str, Any]:
    row = item.row
    fmt = _text(row.get("format")).lower() or PurePosixPath(item.file).suffix.lstrip(".").lower()
    event: dict[str, Any] = {
        "schema": schema,
        **{name: _text(row.get(name)) for name in _EVENT_COLUMNS},
        "customer_ref": _raw(row.get("customer_ref")),
        "consent": {"recording": _text(row.get("consent"))},
        "audio": {"uri": item.uri, "format": fmt, "sha256": item.sha256},
    }
    purposes = _purposes(row.get("purposes"))
    if purposes is not None:
        event["purposes"] = purposes
    pauses = _pci_pauses(row.get("pci_pauses"))
    if pauses is not None:
        event["pci_pauses"] = pauses
    for name in ("sample_rate", "channels"):
        number = _text(row.get(name))
        if number:  # not a number (or 40 digits, or a '²'): the pipeline rejects it (schema)
            plain = number.isascii() and number.isdigit() and len(number) <= 9
            event["audio"][name] = int(number) if plain else number
    roles = _purposes(row.get("channel_roles"))  # the same list syntax
    if roles is not None:
        event["audio"]["channel_roles"] = roles
    return event


# -- CLI ------------------------------------------------------------------------------------
