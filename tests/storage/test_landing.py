"""The landing area: only URIs inside the roots resolve; read/delete/land/sidecars/stale
listing work on file roots and on S3 roots (a real S3 server, SeaweedFS, over HTTP)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from callvault.errors import ConfigError
from storage.errors import LandingError, LandingStoreUnavailable
from storage.landing import (
    SIDECAR_SUFFIX,
    Landing,
    LandingRef,
    LandingRejected,
    StaleLanding,
)
from tests.fixtures.seaweedfs import BucketFactory

BUCKET = "landing-bucket"
S3_ROOT = f"s3://{BUCKET}/incoming/"
EVENT = {"schema": "callvault.recording.v1", "recording_id": "rec-1", "pci_pauses": []}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def landing(root: Path) -> Landing:
    return Landing([root.as_uri(), S3_ROOT], max_bytes=1000)


@pytest.fixture
def s3_client(seaweed_client: Any) -> Any:
    """A client of the real S3 server (SeaweedFS), signed with its credentials."""
    return seaweed_client


@pytest.fixture
def s3_bucket(seaweed_bucket: str) -> str:
    """A fresh versioned landing bucket, emptied and removed after the test."""
    return seaweed_bucket


@pytest.fixture
def s3_landing(s3_client: Any, s3_bucket: str, root: Path) -> Landing:
    s3_root = f"s3://{s3_bucket}/incoming/"
    return Landing([s3_root, root.as_uri()], s3_client_factory=lambda: s3_client, max_bytes=1000)


def _reason(landing: Landing, uri: Any) -> str:
    with pytest.raises(LandingRejected) as caught:
        landing.resolve(uri)
    assert isinstance(caught.value, LandingError)
    return caught.value.reason


# -- resolve -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        ("/../etc/passwd", "uri-outside-landing"),
        ("/sub/../../x.wav", "uri-outside-landing"),
        ("/sub/../x.wav", "uri-outside-landing"),
        ("/./x.wav", "uri-outside-landing"),
        ("/%2e%2e/x.wav", "uri-outside-landing"),
        ("/%2E%2E/%2E%2E/etc/passwd", "uri-outside-landing"),
        ("/.%2e/x.wav", "uri-outside-landing"),
        ("/%252e%252e/x.wav", "uri-invalid"),
        ("/a%00b.wav", "uri-invalid"),
        ("/a\x00b.wav", "uri-invalid"),
        ("/a\nb.wav", "uri-invalid"),
        ("/a\\..\\..\\x.wav", "uri-invalid"),
        ("/x.wav?download=1", "uri-invalid"),
        ("/x.wav#frag", "uri-invalid"),
        ("/x.wav" + SIDECAR_SUFFIX, "uri-invalid"),
        ("", "uri-invalid"),
        ("/", "uri-invalid"),
    ],
)
def test_file_uri_rejections(landing: Landing, root: Path, suffix: str, reason: str) -> None:
    assert _reason(landing, root.as_uri() + suffix) == reason


def test_file_uri_rejections_outside(landing: Landing, root: Path, tmp_path: Path) -> None:
    assert _reason(landing, "file:///etc/passwd") == "uri-outside-landing"
    # A sibling whose name starts like the root is not inside it.
    assert _reason(landing, (tmp_path / "landing-evil" / "x.wav").as_uri()) == "uri-outside-landing"
    assert _reason(landing, tmp_path.as_uri() + "/x.wav") == "uri-outside-landing"
    assert _reason(landing, f"file://evil-host{root}/x.wav") == "uri-invalid"
    assert _reason(landing, "file:relative/x.wav") == "uri-invalid"


def test_symlinks_that_escape_are_rejected(landing: Landing, root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"secret")
    (root / "link.wav").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    assert _reason(landing, (root / "link.wav").as_uri()) == "uri-outside-landing"
    assert _reason(landing, (root / "linkdir" / "secret.wav").as_uri()) == "uri-outside-landing"


def test_symlink_inside_root_resolves_to_its_target(landing: Landing, root: Path) -> None:
    (root / "real.wav").write_bytes(b"RIFF")
    (root / "alias.wav").symlink_to(root / "real.wav")
    ref = landing.resolve((root / "alias.wav").as_uri())
    assert ref.path == root / "real.wav"
    assert landing.read(ref) == b"RIFF"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (f"s3://{BUCKET}/incomingEVIL/x.wav", "uri-outside-landing"),
        (f"s3://{BUCKET}/incoming", "uri-outside-landing"),
        (f"s3://{BUCKET}/other/x.wav", "uri-outside-landing"),
        (f"s3://{BUCKET}/x.wav", "uri-outside-landing"),
        ("s3://other-bucket/incoming/x.wav", "uri-outside-landing"),
        (f"s3://{BUCKET}.evil.example/incoming/x.wav", "uri-outside-landing"),
        (f"s3://user@{BUCKET}/incoming/x.wav", "uri-outside-landing"),
        (f"s3://{BUCKET}/incoming/../secret/x.wav", "uri-outside-landing"),
        (f"s3://{BUCKET}/incoming/%2e%2e/secret/x.wav", "uri-outside-landing"),
        (f"s3://{BUCKET}/incoming/", "uri-invalid"),
        (f"s3://{BUCKET}/incoming//x.wav", "uri-invalid"),
        (f"s3://{BUCKET}/incoming/x.wav%00", "uri-invalid"),
        (f"s3://{BUCKET}/incoming/x.wav?versionId=1", "uri-invalid"),
        (f"s3://{BUCKET}/incoming/x.wav{SIDECAR_SUFFIX}", "uri-invalid"),
        (f"s3://{BUCKET}/incoming/{'k' * 1100}", "uri-invalid"),
    ],
)
def test_s3_uri_rejections(landing: Landing, uri: str, reason: str) -> None:
    assert _reason(landing, uri) == reason


@pytest.mark.parametrize(
    "uri",
    [None, 42, "", "http://example.com/x.wav", "ftp://h/x", "/abs/x.wav", "x.wav",
     "gs://landing-bucket/incoming/x.wav", "file", "s3:/x"],
)  # fmt: skip
def test_unknown_or_malformed_uris(landing: Landing, uri: Any) -> None:
    assert _reason(landing, uri) == "uri-invalid"


def test_accepted_uris_are_canonical(landing: Landing, root: Path) -> None:
    ref = landing.resolve(root.as_uri() + "/sub/call%201.wav")
    assert ref == LandingRef(
        uri=(root / "sub" / "call 1.wav").as_uri(),
        root=root.as_uri(),
        path=root / "sub" / "call 1.wav",
    )
    assert ref.scheme == "file"
    assert landing.resolve(f"file://localhost{root}//x.wav").path == root / "x.wav"
    assert landing.resolve(ref.uri) == ref
    s3_ref = landing.resolve(f"s3://{BUCKET}/incoming/2026/11/x.wav")
    assert (s3_ref.scheme, s3_ref.bucket, s3_ref.key) == ("s3", BUCKET, "incoming/2026/11/x.wav")
    assert s3_ref.root == S3_ROOT


def test_root_behind_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real-landing"
    real.mkdir()
    (tmp_path / "landing-link").symlink_to(real)
    landing = Landing([(tmp_path / "landing-link").as_uri()], max_bytes=10)
    assert landing.roots == [real.as_uri()]
    (real / "a.wav").write_bytes(b"a")
    assert landing.read((tmp_path / "landing-link" / "a.wav").as_uri()) == b"a"


@pytest.mark.parametrize(
    "roots",
    [[], "file:///tmp/landing", ["file://relative/dir"], ["http://x/"], ["s3://Bad_Bucket/x/"],
     ["file:///tmp/../etc"], ["file:///tmp/a%20b"], ["s3://bucket/p?x=1"]],
)  # fmt: skip
def test_bad_roots(roots: Any) -> None:
    with pytest.raises(ConfigError):
        Landing(roots, max_bytes=10)


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True])
def test_bad_max_bytes(max_bytes: Any) -> None:
    with pytest.raises(ConfigError, match="max_bytes"):
        Landing(["file:///tmp/landing"], max_bytes=max_bytes)


# -- file roots --------------------------------------------------------------------


def test_file_read_and_delete(landing: Landing, root: Path) -> None:
    (root / "a.wav").write_bytes(b"RIFF....")
    uri = (root / "a.wav").as_uri()
    assert landing.read(uri) == b"RIFF...."
    landing.delete(uri)
    assert not (root / "a.wav").exists()
    landing.delete(uri)  # idempotent
    with pytest.raises(LandingRejected) as caught:
        landing.read(uri)
    assert caught.value.reason == "landing-missing"


def test_file_too_large(landing: Landing, root: Path) -> None:
    (root / "ok.wav").write_bytes(b"x" * 1000)
    (root / "big.wav").write_bytes(b"x" * 1001)
    assert len(landing.read((root / "ok.wav").as_uri())) == 1000
    with pytest.raises(LandingRejected) as caught:
        landing.read((root / "big.wav").as_uri())
    assert caught.value.reason == "landing-too-large"


def test_file_swapped_for_symlink_after_resolve(
    landing: Landing, root: Path, tmp_path: Path
) -> None:
    (root / "a.wav").write_bytes(b"audio")
    ref = landing.resolve((root / "a.wav").as_uri())
    (tmp_path / "secret").write_bytes(b"secret")
    (root / "a.wav").unlink()
    (root / "a.wav").symlink_to(tmp_path / "secret")
    with pytest.raises(LandingRejected) as caught:
        landing.read(ref)
    assert caught.value.reason == "uri-outside-landing"


def test_directory_is_not_audio(landing: Landing, root: Path) -> None:
    (root / "dir.wav").mkdir()
    with pytest.raises(LandingRejected) as caught:
        landing.read((root / "dir.wav").as_uri())
    assert caught.value.reason == "uri-invalid"


def test_land_into_file_root(tmp_path: Path) -> None:
    root = tmp_path / "not-yet" / "landing"
    landing = Landing([root.as_uri()], max_bytes=100)
    uri = landing.land("rec-1.wav", b"first")
    assert uri == (root / "rec-1.wav").as_uri()
    assert landing.read(uri) == b"first"
    assert landing.land("rec-1.wav", b"second") == uri  # a retry overwrites
    assert landing.read(uri) == b"second"
    assert stat.S_IMODE((root / "rec-1.wav").stat().st_mode) == 0o600
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert sorted(p.name for p in root.iterdir()) == ["rec-1.wav"]  # no temp files left


@pytest.mark.parametrize(
    "name",
    ["", "../x.wav", "a/b.wav", ".hidden", "a b.wav", "x.wav" + SIDECAR_SUFFIX, "k" * 201, None],
)
def test_land_rejects_bad_names(landing: Landing, root: Path, name: Any) -> None:
    with pytest.raises(LandingRejected) as caught:
        landing.land(name, b"x")
    assert caught.value.reason == "uri-invalid"
    assert list(root.iterdir()) == []


def test_land_rejects_too_large(landing: Landing, root: Path) -> None:
    with pytest.raises(LandingRejected) as caught:
        landing.land("big.wav", b"x" * 1001)
    assert caught.value.reason == "landing-too-large"
    assert list(root.iterdir()) == []


def test_file_sidecar(landing: Landing, root: Path) -> None:
    uri = landing.land("rec-1.wav", b"audio")
    assert landing.read_sidecar(uri) is None
    sidecar_uri = landing.write_sidecar(uri, EVENT)
    assert sidecar_uri == uri + SIDECAR_SUFFIX
    assert landing.read_sidecar(landing.resolve(uri)) == EVENT
    assert stat.S_IMODE((root / ("rec-1.wav" + SIDECAR_SUFFIX)).stat().st_mode) == 0o600
    landing.delete_sidecar(uri)
    landing.delete_sidecar(uri)  # idempotent
    assert landing.read_sidecar(uri) is None
    assert landing.read(uri) == b"audio"


def test_sidecar_errors(landing: Landing, root: Path) -> None:
    uri = landing.land("rec-1.wav", b"audio")
    with pytest.raises(LandingError, match="JSON-serialisable"):
        landing.write_sidecar(uri, {"when": object()})
    for bad in ("[1, 2", "[" * 60_000):  # the second: past the parser's recursion
        (root / ("rec-1.wav" + SIDECAR_SUFFIX)).write_text(bad)
        with pytest.raises(LandingError, match="not valid JSON"):
            landing.read_sidecar(uri)
    (root / ("rec-1.wav" + SIDECAR_SUFFIX)).write_text("[1, 2]")
    with pytest.raises(LandingError, match="not a JSON object"):
        landing.read_sidecar(uri)
    with pytest.raises(LandingRejected) as caught:
        landing.write_sidecar("file:///etc/passwd", EVENT)
    assert caught.value.reason == "uri-outside-landing"


def test_iter_stale_on_file_root(root: Path) -> None:
    landing = Landing([root.as_uri()], max_bytes=100)
    now = 1_800_000_000.0
    files = {"old.wav": 7200, "sub/older.wav": 86400, "new.wav": 60, ".tmp-abc": 99999}
    for name, age in files.items():
        path = root / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (now - age, now - age))
    landing.write_sidecar((root / "old.wav").as_uri(), EVENT)
    sidecar = root / ("old.wav" + SIDECAR_SUFFIX)
    os.utime(sidecar, (now - 99999, now - 99999))
    stale = sorted(landing.iter_stale(3600, now=now), key=lambda s: s.uri)
    assert stale == [
        StaleLanding(uri=(root / "old.wav").as_uri(), age_seconds=7200, has_sidecar=True),
        StaleLanding(
            uri=(root / "sub" / "older.wav").as_uri(), age_seconds=86400, has_sidecar=False
        ),
    ]
    assert len(list(landing.iter_stale(0, now=now))) == 3
    assert list(landing.iter_stale(10**6, now=now)) == []
    recent = list(landing.iter_stale(0))  # default now: the files are about 1.8e9 s "old"
    assert all(s.age_seconds > time.time() - now - 100 for s in recent)
    with pytest.raises(LandingError, match="older_than_seconds"):
        list(landing.iter_stale(-1, now=now))


def test_iter_stale_on_missing_root(tmp_path: Path) -> None:
    landing = Landing([(tmp_path / "absent").as_uri()], max_bytes=10)
    assert list(landing.iter_stale(0)) == []


# -- s3 roots ----------------------------------------------------------------------


def _versions(client: Any, bucket: str, key: str) -> list[Any]:
    response = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [*response.get("Versions", []), *response.get("DeleteMarkers", [])]


def test_s3_land_read_delete(s3_landing: Landing, s3_client: Any, s3_bucket: str) -> None:
    uri = s3_landing.land("rec-1.wav", b"first")
    assert uri == f"s3://{s3_bucket}/incoming/rec-1.wav"
    s3_landing.land("rec-1.wav", b"second")
    assert s3_landing.read(uri) == b"second"
    assert len(_versions(s3_client, s3_bucket, "incoming/rec-1.wav")) == 2
    s3_landing.delete(uri)
    assert _versions(s3_client, s3_bucket, "incoming/rec-1.wav") == []  # every version is gone
    s3_landing.delete(uri)  # idempotent
    with pytest.raises(LandingRejected) as caught:
        s3_landing.read(uri)
    assert caught.value.reason == "landing-missing"


def test_s3_too_large(s3_landing: Landing, s3_client: Any, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="incoming/big.wav", Body=b"x" * 1001)
    with pytest.raises(LandingRejected) as caught:
        s3_landing.read(f"s3://{s3_bucket}/incoming/big.wav")
    assert caught.value.reason == "landing-too-large"


def test_s3_sidecar(s3_landing: Landing, s3_client: Any, s3_bucket: str) -> None:
    uri = s3_landing.land("rec-1.wav", b"audio")
    assert s3_landing.read_sidecar(uri) is None
    assert s3_landing.write_sidecar(uri, EVENT) == uri + SIDECAR_SUFFIX
    assert s3_landing.read_sidecar(uri) == EVENT
    s3_landing.delete_sidecar(uri)
    assert s3_landing.read_sidecar(uri) is None
    assert _versions(s3_client, s3_bucket, "incoming/rec-1.wav" + SIDECAR_SUFFIX) == []
    assert s3_landing.read(uri) == b"audio"


def test_s3_iter_stale(s3_landing: Landing, s3_client: Any, s3_bucket: str, root: Path) -> None:
    old = s3_landing.land("old.wav", b"x")
    s3_landing.write_sidecar(old, EVENT)
    s3_landing.land("other.wav", b"y")
    s3_client.put_object(Bucket=s3_bucket, Key="elsewhere/ignored.wav", Body=b"z")
    s3_client.put_object(Bucket=s3_bucket, Key="incoming/bad%2e%2e.wav", Body=b"z")
    (root / "local.wav").write_bytes(b"l")
    later = time.time() + 3600
    stale = sorted(s3_landing.iter_stale(1800, now=later), key=lambda s: s.uri)
    assert [(s.uri, s.has_sidecar) for s in stale] == [
        (root.joinpath("local.wav").as_uri(), False),
        (f"s3://{s3_bucket}/incoming/old.wav", True),
        (f"s3://{s3_bucket}/incoming/other.wav", False),
    ]
    assert all(3000 < s.age_seconds < 4200 for s in stale)
    assert list(s3_landing.iter_stale(7200, now=later)) == []


def test_s3_missing_bucket_is_a_plain_landing_error(s3_client: Any) -> None:
    landing = Landing(["s3://absent-bucket/in/"], s3_client_factory=lambda: s3_client, max_bytes=9)
    for call in (
        lambda: landing.read("s3://absent-bucket/in/x.wav"),
        lambda: landing.land("x.wav", b"x"),
        lambda: list(landing.iter_stale(0)),
        lambda: landing.delete("s3://absent-bucket/in/x.wav"),
    ):
        with pytest.raises(LandingError, match="absent-bucket") as caught:
            call()
        assert not isinstance(caught.value, LandingRejected)
        assert type(caught.value.__cause__).__module__.startswith("botocore")


def test_client_factory_is_called_lazily_once(
    s3_client: Any, seaweed_buckets: BucketFactory, root: Path
) -> None:
    s3_bucket = seaweed_buckets.name("landing")
    calls: list[int] = []

    def factory() -> Any:
        calls.append(1)
        return s3_client

    s3_client.create_bucket(Bucket=s3_bucket)
    s3_root = f"s3://{s3_bucket}/incoming/"
    landing = Landing([root.as_uri(), s3_root], s3_client_factory=factory, max_bytes=100)
    landing.land("a.wav", b"a")  # a file root: no client needed
    assert calls == []
    s3_client.put_object(Bucket=s3_bucket, Key="incoming/b.wav", Body=b"b")
    assert landing.read(f"s3://{s3_bucket}/incoming/b.wav") == b"b"
    assert landing.read(f"s3://{s3_bucket}/incoming/b.wav") == b"b"
    assert calls == [1]


def test_hand_made_ref_is_checked_again(landing: Landing) -> None:
    forged = LandingRef(
        uri="s3://other-bucket/secret.wav", root=S3_ROOT, bucket="other-bucket", key="secret.wav"
    )
    for call in (lambda: landing.read(forged), lambda: landing.delete(forged)):
        with pytest.raises(LandingRejected) as caught:
            call()
        assert caught.value.reason == "uri-outside-landing"


# -- reads that never block and never leave the root -----------------------------------------


def _reason_of(landing: Landing, path: Path) -> str:
    with pytest.raises(LandingRejected) as caught:
        landing.read(path.as_uri())
    return caught.value.reason


def test_a_fifo_is_refused_before_it_is_opened(landing: Landing, root: Path) -> None:
    """Found on main: os.open on a FIFO blocked the worker until a writer came."""
    fifo = root / "fifo.wav"
    os.mkfifo(fifo)
    assert _reason_of(landing, fifo) == "landing-not-regular"


def test_a_unix_socket_is_refused_for_good(landing: Landing, root: Path) -> None:
    """Found on main: ENXIO was raised as a transient LandingError, retried forever."""
    import socket

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(root / "sock.wav"))
        assert _reason_of(landing, root / "sock.wav") == "landing-not-regular"
    finally:
        server.close()


def test_a_hard_link_to_a_file_outside_the_root_is_refused(
    landing: Landing, root: Path, tmp_path: Path
) -> None:
    """Found on main: realpath cannot see hard links; the outside file was read."""
    outside = tmp_path / "shadow"
    outside.write_bytes(b"secret")
    os.link(outside, root / "linked.wav")
    assert _reason_of(landing, root / "linked.wav") == "landing-unsafe"
    archive = Landing([root.as_uri()], max_bytes=1000, allow_hard_links=True)
    assert archive.read((root / "linked.wav").as_uri()) == b"secret"


def test_a_missing_landing_root_is_unavailable_not_missing_audio(root: Path) -> None:
    landing = Landing([root.as_uri()], max_bytes=1000)
    root.rmdir()  # the landing volume is gone (unmounted): retry, do not dead-letter
    with pytest.raises(LandingStoreUnavailable):
        landing.read((root / "a.wav").as_uri())


def test_folder_swapped_for_symlink_after_resolve_is_refused_by_every_step(
    landing: Landing, root: Path, tmp_path: Path
) -> None:
    """A read of a resolved ref does not resolve it again (one realpath walk fewer), but
    the read's own re-check still refuses a folder swapped for a symlink since; so does
    discard, which resolves once for the audio and its sidecar."""
    (root / "sub").mkdir()
    (root / "sub" / "a.wav").write_bytes(b"audio")
    landing.write_sidecar((root / "sub" / "a.wav").as_uri(), {"recording_id": "r-1"})
    ref = landing.resolve((root / "sub" / "a.wav").as_uri())
    assert landing.read(ref) == b"audio" and landing.read_sidecar(ref) == {"recording_id": "r-1"}
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.wav").write_bytes(b"secret")
    (outside / "a.wav.event.json").write_text('{"recording_id": "evil"}')
    (root / "sub").rename(tmp_path / "moved")
    (root / "sub").symlink_to(outside)
    for step in (landing.read, landing.read_sidecar, landing.discard):
        with pytest.raises(LandingRejected) as caught:
            step(ref)
        assert caught.value.reason == "uri-outside-landing", step
    assert (outside / "a.wav").exists() and (outside / "a.wav.event.json").exists()


def test_discard_deletes_the_audio_and_its_sidecar(landing: Landing, root: Path) -> None:
    (root / "b.wav").write_bytes(b"audio")
    landing.write_sidecar((root / "b.wav").as_uri(), {"recording_id": "r-2"})
    landing.discard(landing.resolve((root / "b.wav").as_uri()))
    assert sorted(p.name for p in root.iterdir()) == []
    landing.discard((root / "b.wav").as_uri())  # already gone is fine


def test_without_proc_the_re_check_falls_back_to_realpath(
    landing: Landing, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-check at open reads the open file's real path from /proc/self/fd; where
    that cannot be read it walks realpath instead and still refuses the swap."""
    (root / "sub").mkdir()
    (root / "sub" / "a.wav").write_bytes(b"audio")
    ref = landing.resolve((root / "sub" / "a.wav").as_uri())
    real_readlink = os.readlink

    def no_proc(path: str) -> str:
        if str(path).startswith("/proc/self/fd/"):
            raise FileNotFoundError(path)
        return real_readlink(path)

    monkeypatch.setattr(os, "readlink", no_proc)
    assert landing.read(ref) == b"audio"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.wav").write_bytes(b"secret")
    (root / "sub").rename(tmp_path / "moved")
    (root / "sub").symlink_to(outside)
    with pytest.raises(LandingRejected) as caught:
        landing.read(ref)
    assert caught.value.reason == "uri-outside-landing"
