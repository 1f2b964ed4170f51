"""`callvault import`: a mixed archive through the real ingest pipeline, exact outcomes,
resumability, originals kept (or moved), an S3-prefix archive on SeaweedFS, bad manifests."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from callvault.cli import cli
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from streams.backfill import REQUIRED_COLUMNS, read_manifest
from streams.errors import ManifestError

START = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)


def invoke(env: dict[str, str], *args: str) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALLVAULT_")}
    clean.update(env)
    return CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)


def row(rid: str, file: str, **extra: str) -> dict[str, str]:
    values = {
        "file": file,
        "recording_id": rid,
        "call_id": f"call-{rid}",
        "tenant": "acme",
        "started_at": START.isoformat(),
        "ended_at": (START + timedelta(seconds=3)).isoformat(),
        "agent_id": "agent-7",
        "customer_ref": f"+4930555{rid[-3:]}",
        "queue": "billing",
        "direction": "inbound",
        "consent": "notified",
        "format": "wav",
        "purposes": "",
        "pci_pauses": "",
    }
    values.update(extra)
    return values


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def report_of(path: Path) -> dict[int, dict[str, Any]]:
    return {entry["row"]: entry for entry in map(json.loads, path.read_text().splitlines())}


def open_services(env: dict[str, str]) -> Services:
    return build_services(load_settings(env))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    (folder / "2024" / "05").mkdir(parents=True)
    for n in (1, 2, 5):
        (folder / "2024" / "05" / f"good-{n}.wav").write_bytes(call_wav(3, seed=n))
    (folder / "2024" / "05" / "declined.wav").write_bytes(call_wav(3, seed=9))
    (folder / "2024" / "05" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbage" * 50)
    (folder / "2024" / "05" / "call.aiff").write_bytes(b"FORM\x00\x00\x00\x10AIFFCOMM" * 20)
    (tmp_path / "outside.wav").write_bytes(call_wav(3, seed=3))
    return folder


MIXED = [
    row("rec-001", "2024/05/good-1.wav"),
    row("rec-002", "2024/05/good-2.wav", pci_pauses="500-1500", purposes="quality-improvement"),
    row("rec-003", "2024/05/corrupt.wav"),
    row("rec-004", "2024/05/call.aiff", format="aiff"),
    row("rec-001", "2024/05/good-1.wav"),  # duplicate row
    row("rec-006", "2024/05/gone.wav"),  # missing file
    row("rec-007", "2024/05/declined.wav", consent="declined"),
    row("rec-008", "../outside.wav"),  # escapes the archive
    row("rec-009", "2024/05/good-5.wav", ended_at="yesterday"),  # bad manifest row
    row("rec-010", "2024/05/good-5.wav", format=""),  # format from the extension
]
EXPECTED = {
    1: ("stored", ""),
    2: ("stored", ""),
    3: ("failed", "audio-undecodable"),
    4: ("failed", "audio-unsupported"),
    5: ("duplicate", "duplicate-row"),
    6: ("failed", "landing-missing"),
    7: ("declined", "consent-declined"),
    8: ("failed", "uri-outside-landing"),
    9: ("failed", "invalid-field"),
    10: ("stored", ""),
}


@pytest.mark.parametrize("workers", ["1", "3"])
def test_mixed_archive_exact_outcomes_then_rerun_skips_everything(
    tmp_path: Path, archive: Path, workers: str
) -> None:
    # --workers 3: rows sharded over three import processes; the outcomes, row numbers,
    # duplicate detection and the one import.completed record are those of one process.
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_WORKER_ID": "t1"}
    manifest = write_csv(tmp_path / "manifest.csv", MIXED)
    before = {p: p.read_bytes() for p in archive.rglob("*") if p.is_file()}

    result = invoke(
        env,
        "import",
        str(archive),
        "--manifest",
        str(manifest),
        "--report",
        str(tmp_path / "r1.jsonl"),
        "--batch-size",
        "4",
        "--workers",
        workers,
    )
    assert result.exit_code == 1, result.output  # some rows are not under governance
    report = report_of(tmp_path / "r1.jsonl")
    assert {n: (e["status"], e["reason"]) for n, e in report.items()} == EXPECTED
    assert report[1]["recording_id"] == "rec-001" and report[1]["file"] == "2024/05/good-1.wav"
    assert "555" not in (tmp_path / "r1.jsonl").read_text()  # no customer refs in the report
    assert "stored           3" in result.output and "failed           5" in result.output
    assert "audio-undecodable 1" in result.output
    assert "1 original(s) with declined consent remain" in result.output

    # originals untouched (no --move), and nothing written into the archive
    assert {p: p.read_bytes() for p in archive.rglob("*") if p.is_file()} == before

    services = open_services(env)
    try:
        stored = {r: services.catalog.get_recording(r) for r in ("rec-001", "rec-002", "rec-010")}
        assert all(stored.values())
        assert services.catalog.recording_ids_present([f"rec-{n:03}" for n in range(1, 11)]) == set(
            stored
        )
        assert stored["rec-002"].pci_redacted_ms == 1000  # type: ignore[union-attr]
        blob = services.vault.get(stored["rec-001"].object_key)  # type: ignore[union-attr]
        audio = services.keys.open_recording(blob)
        assert audio[:4] == b"RIFF" and len(audio) > 3 * 8000
        entries = list(services.audit.iter_entries())
        actions = Counter((e.action, e.reason) for e in entries)
        assert actions[("ingest.stored", "")] == 3
        assert actions[("ingest.declined", "consent-declined")] == 1
        rejected = {e.recording_id: e.reason for e in entries if e.action == "ingest.rejected"}
        assert rejected == {
            "rec-003": "audio-undecodable",
            "rec-004": "audio-unsupported",
            "rec-006": "landing-missing",
            "rec-008": "uri-outside-landing",
            "rec-009": "invalid-field",
        }
        assert {e.actor for e in entries if e.action.startswith("ingest.")} == {"import:t1"}
        completed = [e for e in entries if e.action == "import.completed"]
        assert len(completed) == 1 and completed[0].details["stored"] == 3
        assert completed[0].details["failed_by_reason"]["landing-missing"] == 1
        seq_after_first = entries[-1].seq
    finally:
        services.close()

    # re-run: everything already decided is skipped, nothing is read or re-audited
    result = invoke(
        env,
        "import",
        str(archive),
        "--manifest",
        str(manifest),
        "--report",
        str(tmp_path / "r2.jsonl"),
        "--workers",
        workers,
    )
    assert result.exit_code == 1
    rerun = report_of(tmp_path / "r2.jsonl")
    assert {n: (e["status"], e["reason"]) for n, e in rerun.items()} == {
        1: ("skipped", "already-stored"),
        2: ("skipped", "already-stored"),
        3: ("skipped", "previously-failed"),
        4: ("skipped", "previously-failed"),
        5: ("skipped", "already-stored"),
        6: ("skipped", "previously-failed"),
        7: ("skipped", "already-declined"),
        8: ("skipped", "previously-failed"),
        9: ("skipped", "previously-failed"),
        10: ("skipped", "already-stored"),
    }
    assert rerun[6]["detail"] == "failed before: landing-missing"
    services = open_services(env)
    try:
        new = [e.action for e in services.audit.iter_entries(after_seq=seq_after_first)]
        assert new == ["import.completed"]
    finally:
        services.close()

    # the missing file turns up: --retry-failed imports it (the others fail again)
    (archive / "2024" / "05" / "gone.wav").write_bytes(call_wav(3, seed=6))
    result = invoke(
        env,
        "import",
        str(archive),
        "--manifest",
        str(manifest),
        "--report",
        str(tmp_path / "r3.jsonl"),
        "--retry-failed",
    )
    assert result.exit_code == 1
    third = report_of(tmp_path / "r3.jsonl")
    assert third[6]["status"] == "stored"
    assert [third[n]["status"] for n in (3, 4, 8, 9)] == ["failed"] * 4
    services = open_services(env)
    try:
        assert services.catalog.get_recording("rec-006") is not None
    finally:
        services.close()


def test_clean_archive_exits_zero_and_move_deletes_originals(tmp_path: Path, archive: Path) -> None:
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var")}
    manifest = tmp_path / "m.jsonl"
    rows = [
        row("rec-101", "2024/05/good-1.wav"),
        row("rec-102", "2024/05/declined.wav", consent="declined"),
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = invoke(env, "import", str(archive), "--manifest", str(manifest), "--move")
    assert result.exit_code == 0, result.output
    assert not (archive / "2024" / "05" / "good-1.wav").exists()
    assert not (archive / "2024" / "05" / "declined.wav").exists()
    assert (archive / "2024" / "05" / "good-2.wav").exists()  # not in the manifest


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_manifest_sha256_is_checked_and_a_missing_one_is_not_invented(
    tmp_path: Path, archive: Path, workers: str
) -> None:
    """A manifest sha256 is the row's claim, checked as a live event's; a row without one
    imports the file as it is (the importer vouches for its archive)."""
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_WORKER_ID": "t1"}
    good = archive / "2024" / "05" / "good-1.wav"
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    rows = [
        row("rec-301", "2024/05/good-1.wav", sha256=digest.upper()),
        row("rec-302", "2024/05/good-2.wav", sha256=digest),  # good-1's digest
        row("rec-303", "2024/05/good-5.wav", sha256=""),
    ]
    manifest = write_csv(tmp_path / "m.csv", rows)
    report = tmp_path / "r.jsonl"
    result = invoke(env, "import", str(archive), "--manifest", str(manifest),
                    "--report", str(report), "--workers", workers)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert {n: (e["status"], e["reason"]) for n, e in report_of(report).items()} == {
        1: ("stored", ""),
        2: ("failed", "sha256-mismatch"),
        3: ("stored", ""),
    }
    services = open_services(env)
    try:
        for rid, name in (("rec-301", "good-1.wav"), ("rec-303", "good-5.wav")):
            stored = services.catalog.get_recording(rid)
            assert stored is not None
            plain = services.keys.open_recording(services.vault.get(stored.object_key))
            assert plain == (archive / "2024" / "05" / name).read_bytes()
    finally:
        services.close()


def test_s3_prefix_archive_keeps_originals(
    tmp_path: Path,
    seaweed_endpoint: str,
    seaweed_env: None,
    seaweed_client: Any,
    seaweed_bucket: str,
) -> None:
    s3_client, s3_bucket = seaweed_client, seaweed_bucket
    audio = {f"calls/2024/c{n}.wav": call_wav(3, seed=n) for n in (1, 2)}
    for key, data in audio.items():
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=data)
    s3_client.put_object(Bucket=s3_bucket, Key="other/c9.wav", Body=call_wav(3, seed=9))
    rows = [
        row(
            "rec-201", "2024/c1.wav", sha256=hashlib.sha256(audio["calls/2024/c1.wav"]).hexdigest()
        ),
        row("rec-202", "2024/c2.wav"),
        row("rec-203", "2024/c3.wav"),  # missing
        row("rec-204", "../other/c9.wav"),  # beside the prefix
    ]
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(rows))
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_S3_ENDPOINT": seaweed_endpoint}
    report = tmp_path / "r.jsonl"
    result = invoke(
        env,
        "import",
        f"s3://{s3_bucket}/calls",
        "--manifest",
        str(manifest),
        "--report",
        str(report),
    )
    assert result.exit_code == 1, result.output
    outcomes = {n: (e["status"], e["reason"]) for n, e in report_of(report).items()}
    assert outcomes == {
        1: ("stored", ""),
        2: ("stored", ""),
        3: ("failed", "landing-missing"),
        4: ("failed", "uri-outside-landing"),
    }
    for key in audio:  # originals kept
        assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == audio[key]
    services = open_services(env)
    try:
        assert services.catalog.recording_ids_present(["rec-201", "rec-202"]) == {
            "rec-201",
            "rec-202",
        }
    finally:
        services.close()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.csv", "file,recording_id\nx.wav,rec-1\n", "missing required column(s): call_id"),
        ("m.json", json.dumps([{"file": "x.wav"}]), "missing required column(s): recording_id"),
        ("m.json", "{not json", "not valid JSON"),
        ("m.json", json.dumps({"file": "x"}), "array of objects"),
        ("m.jsonl", '{"file": "x"}\n[1]\n', "line 2 is not a JSON object"),
        ("m.bin", "\x00\x01\x02binary", "neither CSV nor JSON"),
        ("m.json", "[" * 100_000 + "]" * 100_000, "not valid JSON: nested too deep"),
        ("m.json", "[" + "7" * 5000 + "]", "not valid JSON: Exceeds the limit"),
        ("m.jsonl", '{"file": "x"}\n' + "[" * 100_000 + "\n", "line 2: nested too deep"),
        ("m.txt", "", "empty"),
    ],
)
def test_bad_manifest_is_a_clear_error_exit_2(
    tmp_path: Path, archive: Path, name: str, content: str, message: str
) -> None:
    manifest = tmp_path / name
    manifest.write_text(content)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(manifest)
    result = invoke(
        {"CALLVAULT_DATA_DIR": str(tmp_path / "var")},
        "import",
        str(archive),
        "--manifest",
        str(manifest),
    )
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "var").exists()  # nothing was opened


def test_bad_source_and_missing_manifest_exit_2(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [row("rec-1", "a.wav")])
    result = invoke(
        {"CALLVAULT_DATA_DIR": str(tmp_path / "var")},
        "import",
        str(tmp_path / "nope"),
        "--manifest",
        str(manifest),
    )
    assert result.exit_code == 2 and "is not a folder" in result.output
    result = invoke(
        {"CALLVAULT_DATA_DIR": str(tmp_path / "var")},
        "import",
        str(tmp_path),
        "--manifest",
        str(tmp_path / "none.csv"),
    )
    assert result.exit_code == 2 and "cannot read manifest" in result.output
    assert set(REQUIRED_COLUMNS) <= set(row("rec-1", "a.wav"))


def test_a_stereo_sln_archive_is_imported_with_its_declared_layout(tmp_path: Path) -> None:
    """MixMonitor ``D``-option ``.raw`` files: the manifest's sample_rate, channels and
    channel_roles reach the event, so a 3 s stereo call is not stored as 6 s of mono and
    the customer's pause lands on the customer's channel."""
    import warnings
    import wave
    from io import BytesIO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    from storage.audio import decode

    def pcm(seed: int) -> bytes:
        with wave.open(BytesIO(call_wav(3, codec="pcm16", seed=seed))) as w:
            return w.readframes(w.getnframes())

    customer, agent = pcm(1), pcm(2)
    stereo = audioop.add(audioop.tostereo(customer, 2, 1, 0), audioop.tostereo(agent, 2, 0, 1), 2)
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "1764590400.17.raw").write_bytes(stereo)
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var")}
    manifest = tmp_path / "m.json"
    entry = row("rec-st1", "1764590400.17.raw", format="sln", sample_rate="8000", channels="2",
                channel_roles="customer;agent")  # fmt: skip
    entry["pci_pauses"] = [{"start_ms": 1000, "end_ms": 2000, "channels": ["customer"]}]  # type: ignore[assignment]
    manifest.write_text(json.dumps([entry]))
    result = invoke(env, "import", str(folder), "--manifest", str(manifest))
    assert result.exit_code == 0, result.output
    services = open_services(env)
    try:
        stored = services.catalog.get_recording("rec-st1")
        assert stored is not None
        assert (stored.channels, stored.duration_ms) == (2, 3000)
        assert stored.channel_roles == ("customer", "agent")
        audio = decode(services.keys.open_recording(services.vault.get(stored.object_key)), "wav")
        left, right = audioop.tomono(audio.pcm, 2, 1, 0), audioop.tomono(audio.pcm, 2, 0, 1)
        assert right == agent
        assert not any(left[16000:32000]) and left[:16000] == customer[:16000]
        assert left[32000:] == customer[32000:]
    finally:
        services.close()


@pytest.mark.parametrize("kind", ["fifo", "folder", "socket", "not-utf8"])
def test_a_manifest_that_is_no_text_file_is_refused_at_once_exit_2(
    tmp_path: Path, archive: Path, kind: str
) -> None:
    """A FIFO named as the manifest would block the import forever, /dev/zero fill the
    memory: only a regular UTF-8 file is read."""
    import socket

    manifest = tmp_path / "calls.csv"
    listener = None
    if kind == "fifo":
        os.mkfifo(manifest)
        message = "is not a regular file"
    elif kind == "folder":
        manifest.mkdir()
        message = "is a directory"  # click's own check
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(manifest))
        message = "cannot read manifest"
    else:
        manifest.write_bytes(b"file,recording_id\n\xff\xfe.wav,rec-1\n")
        message = "not UTF-8"
    try:
        result = invoke(
            {"CALLVAULT_DATA_DIR": str(tmp_path / "var")},
            "import", str(archive), "--manifest", str(manifest),
        )  # fmt: skip
    finally:
        if listener is not None:
            listener.close()
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "var").exists()


def test_hostile_rows_each_fail_with_a_reason_and_never_stop_the_import(
    tmp_path: Path, archive: Path
) -> None:
    """The ugly cases, each in one row of a JSON manifest among good ones: every row ends
    with a reason code, the good rows are stored, and rows with a valid recording id are
    audited as rejected (a re-run skips them as failed before)."""
    import socket

    (archive / "fifo.wav").parent.mkdir(exist_ok=True)
    os.mkfifo(archive / "fifo.wav")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(archive / "sock.wav"))
    good = "2024/05/good-1.wav"
    deep = "[" * 50_000 + "]" * 50_000
    hostile: dict[str, tuple[dict[str, str], str]] = {
        "rec-h01": ({"file": "fifo.wav"}, "landing-not-regular"),
        "rec-h02": ({"file": "sock.wav"}, "landing-not-regular"),
        "rec-h03": ({"file": "\ud800.wav"}, "uri-invalid"),  # not even surrogateescape
        "rec-h04": ({"file": "\udcff.wav"}, "uri-invalid"),  # a byte 0xff, as os spells it
        "rec-h05": ({"purposes": deep}, "schema"),
        "rec-h06": ({"pci_pauses": deep}, "schema"),
        "rec-h07": ({"sample_rate": "9" * 5000}, "schema"),  # over int()'s 4300 digits
        "rec-h08": ({"channels": "\u00b2"}, "schema"),  # '²'.isdigit() is True
        "rec-h09": ({"tenant": "ac\udc80me"}, "invalid-field"),
        "rec-h10": ({"started_at": "0001-01-01T00:00:00+00:00",
                     "ended_at": "0001-01-01T00:00:03+00:00"}, "invalid-field"),
        "rec-h11": ({"started_at": "9999-12-31T23:59:50+14:00",
                     "ended_at": "9999-12-31T23:59:59+14:00"}, "invalid-field"),
        "rec-h12": ({"customer_ref": "x" * 100_000}, "schema"),
        "rec-h13": ({"started_at": "2026-13-45T99:99:99+00:00"}, "invalid-field"),
    }  # fmt: skip
    rows: list[dict[str, Any]] = [row("rec-g01", good)]
    rows += [row(rid, good) | cells for rid, (cells, _) in hostile.items()]
    rows.append(row("rec-g02", "2024/05/good-2.wav"))
    rows.append(dict(row("rec-h14", good), consent={"recording": "granted"}))
    manifest = tmp_path / "calls.json"
    manifest.write_text(json.dumps(rows))  # ensure_ascii: the surrogates as \\u escapes
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_WORKER_ID": "t1"}
    result = invoke(
        env, "import", str(archive), "--manifest", str(manifest),
        "--report", str(tmp_path / "r.jsonl"), "--batch-size", "5",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    report = {e["recording_id"] or e["row"]: e for e in report_of(tmp_path / "r.jsonl").values()}
    assert report["rec-g01"]["status"] == report["rec-g02"]["status"] == "stored"
    got = {rid: (report[rid]["status"], report[rid]["reason"]) for rid in hostile}
    assert got == {rid: ("failed", reason) for rid, (_, reason) in hostile.items()}
    assert (report["rec-h14"]["status"], report["rec-h14"]["reason"]) == ("failed", "invalid-field")
    services = open_services(env)
    try:
        rejected = {
            e.recording_id: e.reason
            for e in services.audit.iter_entries()
            if e.action == "ingest.rejected"
        }
    finally:
        services.close()
    assert rejected == {rid: reason for rid, (_, reason) in hostile.items()} | {
        "rec-h14": "invalid-field"
    }


def test_a_row_nothing_foresaw_fails_alone(
    tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error while one row is turned into an event fails that row
    (internal-error, retried by the next run: nothing recorded it as failed), never the
    import."""
    import streams.backfill

    real = streams.backfill._event

    def event(item: Any, schema: str) -> dict[str, Any]:
        if item.recording_id == "rec-002":
            raise KeyError("surprise")
        return real(item, schema)

    monkeypatch.setattr(streams.backfill, "_event", event)
    manifest = write_csv(
        tmp_path / "m.csv",
        [row("rec-001", "2024/05/good-1.wav"), row("rec-002", "2024/05/good-2.wav"),
         row("rec-005", "2024/05/good-5.wav")],
    )  # fmt: skip
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_WORKER_ID": "t1"}
    args = ("import", str(archive), "--manifest", str(manifest), "--report")
    result = invoke(env, *args, str(tmp_path / "r1.jsonl"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    report = report_of(tmp_path / "r1.jsonl")
    assert [(e["status"], e["reason"]) for e in report.values()] == [
        ("stored", ""), ("failed", "internal-error"), ("stored", "")
    ]  # fmt: skip
    assert "KeyError" in report[2]["detail"]
    monkeypatch.setattr(streams.backfill, "_event", real)
    result = invoke(env, *args, str(tmp_path / "r2.jsonl"))  # fixed: the re-run stores it
    assert result.exit_code == 0, result.output
    assert [e["status"] for e in report_of(tmp_path / "r2.jsonl").values()] == [
        "skipped", "stored", "skipped"
    ]  # fmt: skip


def test_a_report_that_cannot_be_written_stops_the_import_cleanly(
    tmp_path: Path, archive: Path
) -> None:
    """A full disk under --report (/dev/full) is a clear error, exit 2; what was imported
    is kept and a re-run with a writable report resumes."""
    manifest = write_csv(
        tmp_path / "m.csv",
        [row("rec-001", "2024/05/good-1.wav"), row("rec-002", "2024/05/good-2.wav")],
    )
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_WORKER_ID": "t1"}
    args = ("import", str(archive), "--manifest", str(manifest), "--report")
    result = invoke(env, *args, "/dev/full")
    assert result.exit_code == 2, result.output
    assert "cannot write report /dev/full" in result.output and "re-run" in result.output
    assert "Traceback" not in result.output
    result = invoke(env, *args, str(tmp_path / "r.jsonl"))
    assert result.exit_code == 0, result.output
    statuses = Counter(e["status"] for e in report_of(tmp_path / "r.jsonl").values())
    assert statuses["stored"] + statuses["skipped"] == 2 and statuses["skipped"] >= 1
