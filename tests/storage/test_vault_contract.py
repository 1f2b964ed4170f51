"""One contract for every vault backend, then what is specific to each.

``TestVaultContract`` runs against a LocalVault on tmp_path and an S3Vault talking
to a real S3 server, SeaweedFS, over HTTP (a fresh versioned bucket per test, key
prefix), with signed requests.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

import storage._aws
from callvault.errors import ConfigError
from callvault.seaweed import S3Credentials
from storage.errors import RecordingNotFound, StorageError, VaultUnavailable
from storage.types import ObjectInfo
from storage.vault import LocalVault, Vault, object_sha256, open_vault
from storage.vault.base import HASH_WINDOW
from storage.vault.s3 import S3Vault
from tests.fixtures.seaweedfs import BucketFactory
from tests.fixtures.syncs import record_syncs

TAGS = {"purpose": "qa", "retention": "standard-90d"}
BLOB = bytes(range(256)) * 40  # every byte value, 10240 bytes


@pytest.fixture(params=["local", "s3"])
def vault(request: pytest.FixtureRequest, tmp_path: Path) -> Vault:
    if request.param == "local":
        return LocalVault(tmp_path / "vault")
    client = request.getfixturevalue("seaweed_client")
    bucket = request.getfixturevalue("seaweed_bucket")
    return S3Vault(bucket, "vault", client=client)


BAD_KEYS = [
    "",
    "/abs/key",
    "../escape",
    "a/../b",
    "a/./b",
    "..",
    "a//b",
    "a/",
    "a b",
    "a\\b",
    "a\x00b",
    "caf\u00e9",
    "a?b",
    ".hidden",
    "a/.tags/b",
    "x" * 513,
    "x" * 201,
]

BAD_TAGS = [
    {f"k{i}": "v" for i in range(11)},
    {"k" * 129: "v"},
    {"k": "v" * 257},
    {"": "v"},
    {"a*b": "v"},
    {"k": "semi;colon"},
    {"aws:purpose": "qa"},
    {"k": 3},
    "purpose=qa",
]


class TestVaultContract:
    def test_is_a_vault_with_url(self, vault: Vault) -> None:
        assert isinstance(vault, Vault)
        assert vault.url.startswith(("file:///", "s3://"))

    def test_put_get_round_trip(self, vault: Vault) -> None:
        info = vault.put("recordings/ab/rec-1.cvr", BLOB, tags=TAGS)
        assert isinstance(info, ObjectInfo)
        assert (info.key, info.size, info.tags) == ("recordings/ab/rec-1.cvr", len(BLOB), TAGS)
        assert vault.get("recordings/ab/rec-1.cvr") == BLOB

    def test_object_sha256_reads_ranges_never_the_whole_object(
        self, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data = os.urandom(2 * HASH_WINDOW + 12345)
        vault.put(
            "big/rec.cvr", [data[i : i + 65536] for i in range(0, len(data), 65536)], tags=TAGS
        )
        vault.put("big/empty.cvr", b"", tags=TAGS)
        ranges: list[int] = []
        real_range = vault.get_range

        def counted(key: str, start: int, end: int) -> bytes:
            ranges.append(end - start + 1)
            return real_range(key, start, end)

        def whole(key: str) -> bytes:
            raise AssertionError("the whole object was read")

        monkeypatch.setattr(vault, "get", whole)
        monkeypatch.setattr(vault, "get_range", counted)
        assert object_sha256(vault, "big/rec.cvr") == hashlib.sha256(data).hexdigest()
        assert len(ranges) == 3 and max(ranges) == HASH_WINDOW
        assert object_sha256(vault, "big/empty.cvr") == hashlib.sha256(b"").hexdigest()
        with pytest.raises(RecordingNotFound):
            object_sha256(vault, "big/none.cvr")

    def test_group_commit_put_is_visible_and_flushes(self, vault: Vault) -> None:
        keys = [f"batch/rec-{i}.cvr" for i in range(5)]
        for key in keys:
            vault.put(key, BLOB + key.encode(), tags=TAGS, durable=False)
        vault.flush()
        for key in keys:
            assert vault.get(key) == BLOB + key.encode()
            assert vault.head(key).tags == TAGS
        assert not [p for p in _all_names(vault) if ".tmp-" in p]

    def test_empty_object(self, vault: Vault) -> None:
        vault.put("empty", b"", tags={})
        assert vault.get("empty") == b""
        assert vault.head("empty").size == 0
        with pytest.raises(StorageError, match="not satisfiable") as caught:
            vault.get_range("empty", 0, 0)
        assert not isinstance(caught.value, RecordingNotFound)

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (0, 0, BLOB[:1]),
            (5, 9, BLOB[5:10]),
            (10000, 99999, BLOB[10000:]),
            (10239, 10239, BLOB[-1:]),
        ],
    )
    def test_get_range_is_inclusive_and_clipped(
        self, vault: Vault, start: int, end: int, expected: bytes
    ) -> None:
        vault.put("k", BLOB, tags={})
        assert vault.get_range("k", start, end) == expected

    @pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4), (len(BLOB), len(BLOB) + 10)])
    def test_get_range_rejects_bad_ranges(self, vault: Vault, start: int, end: int) -> None:
        vault.put("k", BLOB, tags={})
        with pytest.raises(StorageError) as caught:
            vault.get_range("k", start, end)
        assert not isinstance(caught.value, RecordingNotFound)

    def test_head_reports_size_and_tags(self, vault: Vault) -> None:
        vault.put("a/b/c", b"12345", tags=TAGS)
        info = vault.head("a/b/c")
        assert (info.key, info.size, info.tags) == ("a/b/c", 5, TAGS)

    def test_exists(self, vault: Vault) -> None:
        assert not vault.exists("k")
        vault.put("k", b"x", tags={})
        assert vault.exists("k")
        assert not vault.exists("k2")

    def test_overwrite_replaces_data_and_tags(self, vault: Vault) -> None:
        vault.put("k", b"first version", tags={"purpose": "qa", "old": "1"})
        info = vault.put("k", b"second", tags={"purpose": "training"})
        assert info.size == 6
        assert vault.get("k") == b"second"
        assert vault.head("k").tags == {"purpose": "training"}
        assert list(vault.iter_keys()) == ["k"]

    def test_put_tags_replaces_all_tags(self, vault: Vault) -> None:
        vault.put("k", b"data", tags=TAGS)
        vault.put_tags("k", {"restricted": "true"})
        assert vault.head("k").tags == {"restricted": "true"}
        assert vault.get("k") == b"data"

    def test_put_tags_on_missing_key(self, vault: Vault) -> None:
        with pytest.raises(RecordingNotFound):
            vault.put_tags("missing", TAGS)

    def test_delete(self, vault: Vault) -> None:
        vault.put("k", b"data", tags=TAGS)
        vault.delete("k")
        assert not vault.exists("k")
        with pytest.raises(RecordingNotFound):
            vault.get("k")
        vault.delete("k")  # again: not an error
        vault.delete("never-existed")

    def test_delete_many(self, vault: Vault) -> None:
        for name in ("a", "b/c", "b/d"):
            vault.put(name, name.encode(), tags=TAGS)
        vault.put("keep", b"keep", tags={})
        assert vault.delete_many(["a", "b/c", "b/d", "missing"]) == []
        assert list(vault.iter_keys()) == ["keep"]
        assert vault.delete_many([]) == []

    def test_delete_many_rejects_bad_key_before_deleting(self, vault: Vault) -> None:
        vault.put("a", b"a", tags={})
        with pytest.raises(StorageError, match="must not start with '/'"):
            vault.delete_many(["a", "/bad"])
        assert vault.exists("a")

    def test_iter_keys_with_prefixes(self, vault: Vault) -> None:
        keys = ["rec-1", "recordings/ab/1", "recordings/ab/2", "recordings/cd/3", "other/x"]
        for key in keys:
            vault.put(key, b"x", tags={})
        assert sorted(vault.iter_keys()) == sorted(keys)
        assert sorted(vault.iter_keys("rec")) == [
            "rec-1",
            "recordings/ab/1",
            "recordings/ab/2",
            "recordings/cd/3",
        ]
        assert sorted(vault.iter_keys("recordings/")) == [
            "recordings/ab/1",
            "recordings/ab/2",
            "recordings/cd/3",
        ]
        assert sorted(vault.iter_keys("recordings/a")) == ["recordings/ab/1", "recordings/ab/2"]
        assert list(vault.iter_keys("nothing/")) == []
        with pytest.raises(StorageError):
            list(vault.iter_keys("../"))

    def test_iter_keys_on_empty_vault(self, vault: Vault) -> None:
        assert list(vault.iter_keys()) == []

    @pytest.mark.parametrize("method", ["get", "head"])
    def test_missing_key(self, vault: Vault, method: str) -> None:
        with pytest.raises(RecordingNotFound, match="missing/key"):
            getattr(vault, method)("missing/key")

    def test_missing_key_range(self, vault: Vault) -> None:
        with pytest.raises(RecordingNotFound):
            vault.get_range("missing", 0, 10)

    @pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
    def test_invalid_key(self, vault: Vault, key: str) -> None:
        for call in (
            lambda: vault.put(key, b"x", tags={}),
            lambda: vault.get(key),
            lambda: vault.get_range(key, 0, 1),
            lambda: vault.head(key),
            lambda: vault.exists(key),
            lambda: vault.delete(key),
            lambda: vault.put_tags(key, {}),
        ):
            with pytest.raises(StorageError, match="vault key") as caught:
                call()
            assert not isinstance(caught.value, RecordingNotFound)
        assert list(vault.iter_keys()) == []

    def test_key_limits(self, vault: Vault) -> None:
        longest = "/".join(["k" * 200, "k" * 200, "k" * 110])
        assert len(longest) == 512
        vault.put(longest, b"x", tags={})
        assert vault.get(longest) == b"x"
        assert list(vault.iter_keys()) == [longest]
        with pytest.raises(StorageError, match="512"):
            vault.put(longest + "k", b"x", tags={})
        with pytest.raises(StorageError, match="200"):
            vault.put("k" * 201, b"x", tags={})
        with pytest.raises(StorageError, match="must be a str"):
            vault.get(None)  # type: ignore[arg-type]

    @pytest.mark.parametrize("tags", BAD_TAGS, ids=repr)
    def test_invalid_tags(self, vault: Vault, tags: Any) -> None:
        with pytest.raises(StorageError, match="tag"):
            vault.put("k", b"x", tags=tags)
        assert not vault.exists("k")
        vault.put("k", b"x", tags=TAGS)
        with pytest.raises(StorageError, match="tag"):
            vault.put_tags("k", tags)
        assert vault.head("k").tags == TAGS

    def test_tag_limits_and_charset(self, vault: Vault) -> None:
        tags = {f"k{i}": f"v{i}" for i in range(8)}
        tags["K" * 128] = "v" * 256
        tags["Gr\u00f6\u00dfe"] = "a b+c-d=e.f_g:h/i@j"
        vault.put("k", b"x", tags=tags)
        assert vault.head("k").tags == tags

    def test_data_must_be_bytes(self, vault: Vault) -> None:
        with pytest.raises(StorageError, match="bytes"):
            vault.put("k", "text", tags={})  # type: ignore[arg-type]
        with pytest.raises(StorageError, match="bytes"):
            vault.put("k", 42, tags={})  # type: ignore[arg-type]

    @pytest.mark.parametrize("size", [0, 1000, 3 * (1 << 20) + 17, 17 * (1 << 20) + 5])
    def test_put_takes_pieces(self, vault: Vault, size: int) -> None:
        """Pieces are written as they come; above 8 MiB on S3 as a multipart upload."""
        data = os.urandom(size)
        pieces = (data[i : i + 700_001] for i in range(0, size, 700_001))
        info = vault.put("rec/streamed.cvlt", pieces, tags={"purpose": "qa"})
        assert info.size == size
        assert vault.get("rec/streamed.cvlt") == data
        assert vault.head("rec/streamed.cvlt").tags == {"purpose": "qa"}
        if size:
            assert vault.get_range("rec/streamed.cvlt", size - 10, size + 5) == data[-10:]

    @pytest.mark.parametrize("fail_after", [1, 14])
    def test_pieces_that_fail_leave_the_old_object(self, vault: Vault, fail_after: int) -> None:
        vault.put("rec/k.cvlt", b"old", tags={})

        def pieces() -> Iterator[bytes]:
            for _ in range(fail_after):
                yield b"x" * (1 << 20)
            raise ValueError("the recording turned out not to be the event's")

        with pytest.raises(ValueError, match="not to be"):
            vault.put("rec/k.cvlt", pieces(), tags={})
        assert vault.get("rec/k.cvlt") == b"old"
        assert list(vault.iter_keys("rec/")) == ["rec/k.cvlt"]

    def test_delete_many_with_the_versions_put_returned(self, vault: Vault) -> None:
        written = {key: vault.put(key, key.encode(), tags={}).version_id for key in ("a", "b/c")}
        vault.put("keep", b"keep", tags={})
        assert vault.delete_many(["a", "b/c", "gone"], versions={**written, "gone": "v1"}) == []
        assert list(vault.iter_keys()) == ["keep"]

    def test_put_tags_of_the_version_put_returned(self, vault: Vault) -> None:
        info = vault.put("k", b"data", tags=TAGS)
        vault.put_tags("k", {"retention-class": "end-of-contract"}, version_id=info.version_id)
        assert vault.head("k").tags == {"retention-class": "end-of-contract"}

    def test_update_tags_merges_into_the_version_put_returned(self, vault: Vault) -> None:
        info = vault.put("k", b"data", tags={"format": "cvlt2", "retention-class": "a"})
        merged = vault.update_tags(
            "k", {"retention-class": "b", "legal-hold": "on"}, version_id=info.version_id
        )
        assert merged == {"format": "cvlt2", "retention-class": "b", "legal-hold": "on"}
        assert vault.head("k").tags == merged
        with pytest.raises(RecordingNotFound):
            vault.update_tags("missing", {"a": "b"})
        with pytest.raises(StorageError, match="at most 10"):
            vault.update_tags("k", {f"t{i}": "x" for i in range(8)})

    def test_iter_objects_reports_size_time_and_versions(self, vault: Vault) -> None:
        before = datetime.now(UTC) - timedelta(seconds=5)
        first = vault.put("rec/a", b"12345", tags={})
        second = vault.put("rec/a", b"123", tags={})
        vault.put("other/b", b"", tags={})
        found = {item.key: item for item in vault.iter_objects()}
        assert sorted(found) == ["other/b", "rec/a"]
        assert (found["rec/a"].size, found["other/b"].size) == (3, 0)
        assert all(before <= item.modified_at <= datetime.now(UTC) for item in found.values())
        if second.version_id is not None:  # a backend that keeps versions lists them all
            assert found["rec/a"].version_ids == (second.version_id, first.version_id)
        else:
            assert found["rec/a"].version_ids == ()
        assert [item.key for item in vault.iter_objects("rec/")] == ["rec/a"]
        with pytest.raises(StorageError):
            list(vault.iter_objects("../"))

    def test_legal_holds_are_a_capability(self, vault: Vault) -> None:
        vault.put("k", b"x", tags={})
        assert vault.object_lock_enabled() is False  # a folder; a bucket without Object Lock
        with pytest.raises(StorageError, match="legal hold"):
            vault.set_legal_holds(["k"], on=True)


# -- S3 only -----------------------------------------------------------------------


def _versions(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    response = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [
        item
        for item in [*response.get("Versions", []), *response.get("DeleteMarkers", [])]
        if item["Key"] == key
    ]


class _SpyClient:
    """A real client that remembers the DeleteObjects batch sizes and listings."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.batches: list[int] = []
        self.listings: list[int] = []  # entries each ListObjectVersions returned

    def delete_objects(self, **kwargs: Any) -> Any:
        self.batches.append(len(kwargs["Delete"]["Objects"]))
        return self._client.delete_objects(**kwargs)

    def list_object_versions(self, **kwargs: Any) -> Any:
        page = self._client.list_object_versions(**kwargs)
        self.listings.append(len(page.get("Versions", [])) + len(page.get("DeleteMarkers", [])))
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def s3_client(seaweed_client: Any) -> Any:
    """The SeaweedFS session client (signed with its generated credentials)."""
    return seaweed_client


@pytest.fixture
def s3_bucket(seaweed_bucket: str) -> str:
    """A fresh versioned bucket on SeaweedFS, emptied and removed after the test."""
    return seaweed_bucket


class TestS3Vault:
    def test_objects_live_under_prefix_with_tags_set_by_put(
        self, s3_client: Any, s3_bucket: str
    ) -> None:
        vault = S3Vault(s3_bucket, "/tenant-a/", client=s3_client)
        assert vault.url == f"s3://{s3_bucket}/tenant-a"
        info = vault.put("rec/1", b"abc", tags={"purpose": "qa", "note": "a b"})
        assert info.version_id
        tagging = s3_client.get_object_tagging(Bucket=s3_bucket, Key="tenant-a/rec/1")
        assert {t["Key"]: t["Value"] for t in tagging["TagSet"]} == {"purpose": "qa", "note": "a b"}
        other = S3Vault(s3_bucket, "tenant-b", client=s3_client)
        other.put("rec/2", b"x", tags={})
        assert list(vault.iter_keys()) == ["rec/1"]
        assert list(other.iter_keys()) == ["rec/2"]

    def test_delete_removes_every_version_and_marker(self, s3_client: Any, s3_bucket: str) -> None:
        vault = S3Vault(s3_bucket, client=s3_client)
        for i in range(3):
            vault.put("k", f"v{i}".encode(), tags={})
        s3_client.delete_object(Bucket=s3_bucket, Key="k")  # a delete marker
        vault.put("k", b"v3", tags={})
        vault.put("kk", b"sibling", tags={})
        assert len(_versions(s3_client, s3_bucket, "k")) == 5
        vault.delete("k")
        assert _versions(s3_client, s3_bucket, "k") == []
        assert vault.get("kk") == b"sibling"

    def test_delete_many_batches_all_versions(
        self, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(storage._aws, "DELETE_BATCH_SIZE", 3)
        spy = _SpyClient(s3_client)
        vault = S3Vault(s3_bucket, client=spy)
        keys = [f"r/{i}" for i in range(4)]
        for key in keys:
            vault.put(key, b"1", tags={})
            vault.put(key, b"2", tags={})
        assert vault.delete_many(keys) == []
        assert spy.batches == [3, 3, 2]
        assert s3_client.list_object_versions(Bucket=s3_bucket).get("Versions") is None

    def test_delete_many_deletes_versions_written_outside_callvault(
        self, s3_client: Any, s3_bucket: str
    ) -> None:
        vault = S3Vault(s3_bucket, "vault", client=s3_client)
        keys = [f"rec/t/{i:02x}/{i:064x}.cvlt" for i in range(40)]
        written = {key: vault.put(key, b"ours", tags={}).version_id for key in keys}
        for key in keys[::7]:  # someone else overwrote a few, and deleted one
            s3_client.put_object(Bucket=s3_bucket, Key=f"vault/{key}", Body=b"theirs")
        s3_client.delete_object(Bucket=s3_bucket, Key=f"vault/{keys[3]}")
        vault.put("rec/t/zz/keep.cvlt", b"keep", tags={})
        assert vault.delete_many(keys, versions=written) == []
        left = s3_client.list_object_versions(Bucket=s3_bucket)
        assert [v["Key"] for v in left.get("Versions", [])] == ["vault/rec/t/zz/keep.cvlt"]
        assert left.get("DeleteMarkers") is None

    def test_delete_many_lists_per_prefix_not_per_key(self, s3_client: Any, s3_bucket: str) -> None:
        spy = _SpyClient(s3_client)
        vault = S3Vault(s3_bucket, client=spy, workers=4)
        keys = [f"rec/t/{i % 16:02x}/{i:064x}.cvlt" for i in range(600)]
        written = {key: vault.put(key, b"x", tags={}).version_id for key in keys}
        due = keys[::2]  # half of them: what a sweep of one day looks like
        assert vault.delete_many(due, versions={k: written[k] for k in due}) == []
        assert len(spy.listings) <= 4 * 3  # a probe and a page or two per run
        assert len(spy.batches) == 4  # one DeleteObjects per run
        assert sorted(vault.iter_keys()) == sorted(keys[1::2])

    def test_versions_of_skips_far_keys_and_resumes_inside_a_key(
        self, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(storage._aws, "_PROBE_KEYS", 3)
        spy = _SpyClient(s3_client)
        keys = [f"k/{i:03d}" for i in range(60)]
        for key in keys:
            s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"1")
        for _ in range(4):  # five versions of k/010: pages end inside it
            s3_client.put_object(Bucket=s3_bucket, Key="k/010", Body=b"2")
        s3_client.delete_object(Bucket=s3_bucket, Key="k/050")
        wanted = ["k/010", "k/030", "k/050", "k/059", "k/100"]
        found = storage._aws.versions_of(spy, s3_bucket, wanted, prefix="k/")
        assert sorted(found) == ["k/010", "k/030", "k/050", "k/059"]
        assert len(found["k/010"]) == 5 and not any(e["IsDeleteMarker"] for e in found["k/010"])
        assert [e["IsDeleteMarker"] for e in found["k/050"]] == [False, True]
        assert len(spy.listings) <= 12  # skipping: about a page per wanted key, not 60 keys
        assert sum(spy.listings) < 60

    def test_legal_hold_on_every_version_makes_s3_refuse_deletion(
        self, s3_client: Any, seaweed_lock_bucket: str
    ) -> None:
        from botocore.exceptions import ClientError

        vault = S3Vault(seaweed_lock_bucket, client=s3_client)
        assert vault.object_lock_enabled()
        first = vault.put("rec/a", b"1", tags={}).version_id
        second = vault.put("rec/a", b"2", tags={}).version_id
        vault.put("rec/b", b"b", tags={})
        assert vault.set_legal_holds(["rec/a", "rec/missing"], on=True) == []
        assert vault.legal_hold_status("rec/a", version_id=first)
        assert vault.legal_hold_status("rec/a", version_id=second)
        assert not vault.legal_hold_status("rec/b")
        assert vault.delete_many(["rec/a", "rec/b"]) == ["rec/a"]  # refused by S3 itself
        with pytest.raises(ClientError):
            s3_client.delete_object(Bucket=seaweed_lock_bucket, Key="rec/a", VersionId=first)
        assert vault.get("rec/a") == b"2" and not vault.exists("rec/b")
        assert vault.set_legal_holds(["rec/a"], on=False, versions={"rec/a": first}) == []
        assert not vault.legal_hold_status("rec/a", version_id=first)
        assert vault.delete_many(["rec/a"]) == []
        assert s3_client.list_object_versions(Bucket=seaweed_lock_bucket).get("Versions") is None

    def test_the_vault_client_reads_timestamps_it_did_not_parse(
        self, seaweed_endpoint: str, seaweed_env: None, s3_bucket: str
    ) -> None:
        opened = open_vault(f"s3://{s3_bucket}", s3_endpoint=seaweed_endpoint)
        before = datetime.now(UTC) - timedelta(seconds=5)
        opened.put("k", b"x", tags={})
        (found,) = opened.iter_objects()
        assert before <= found.modified_at <= datetime.now(UTC)
        assert storage._aws.timestamp("2026-12-01T10:00:00.000Z") == datetime(
            2026, 12, 1, 10, tzinfo=UTC
        )
        assert storage._aws.timestamp(datetime(2026, 1, 1)).tzinfo is UTC
        with pytest.raises(StorageError, match="unreadable time"):
            storage._aws.timestamp("yesterday")

    def test_hashed_pieces_sign_with_their_own_digest_and_s3_checks_it(
        self,
        seaweed_endpoint: str,
        seaweed_env: None,
        s3_bucket: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Pieces that hashed themselves (a SealingStream) lend botocore their sha256: it
        signs the payload with it and sends it as x-amz-checksum-sha256 (no CRC32, no
        second pass over the body). The payload stays signed: a digest that is not the
        body's is refused by the server, nothing is stored."""
        import hashlib

        class Hashed:
            def __init__(self, pieces: list[bytes], digest: str) -> None:
                self.pieces, self.sha256 = pieces, digest

            def __iter__(self) -> Iterator[bytes]:
                yield from self.pieces

        opened = open_vault(f"s3://{s3_bucket}", s3_endpoint=seaweed_endpoint)
        assert isinstance(opened, S3Vault)
        sent: list[dict[str, str]] = []
        opened._client.meta.events.register(
            "before-send.s3.PutObject",
            lambda request, **_: sent.append(
                {
                    k.lower(): v.decode() if isinstance(v, bytes) else v
                    for k, v in request.headers.items()
                }  # fmt: skip
            ),
        )
        import botocore.auth

        hashed_bodies: list[int] = []  # botocore's own pass over a body (SigV4Auth.payload)
        botocore_payload = botocore.auth.SigV4Auth.payload

        def payload(signer: Any, request: Any) -> Any:
            hashed_bodies.append(1)
            return botocore_payload(signer, request)

        monkeypatch.setattr(botocore.auth.S3SigV4Auth, "payload", payload, raising=False)
        pieces = [BLOB[:100], BLOB[100:]]
        digest = hashlib.sha256(BLOB).hexdigest()
        opened.put("k", Hashed(pieces, digest), tags=TAGS)
        assert hashed_bodies == []
        assert opened.get("k") == BLOB
        headers = sent[-1]
        assert headers["x-amz-content-sha256"] == digest
        assert "x-amz-checksum-sha256" in headers and "x-amz-checksum-crc32" not in headers
        assert "Signature=" in headers["authorization"]
        wrong = hashlib.sha256(b"not the body").hexdigest()
        with pytest.raises(StorageError):
            opened.put("bad", Hashed(pieces, wrong), tags=TAGS)
        with pytest.raises(RecordingNotFound):
            opened.get("bad")
        opened.put("plain", iter(pieces), tags=TAGS)  # no digest: botocore hashes, as before
        assert hashed_bodies
        assert sent[-1]["x-amz-content-sha256"] == digest

    def test_delete_many_on_unversioned_bucket(
        self, s3_client: Any, seaweed_buckets: BucketFactory
    ) -> None:
        plain = seaweed_buckets.name("plain")
        vault = S3Vault(plain, client=s3_client)
        vault.ensure_bucket()
        vault.ensure_bucket()  # idempotent
        assert "Status" not in s3_client.get_bucket_versioning(Bucket=plain)
        vault.put("a", b"a", tags={})
        vault.put("b", b"b", tags={})
        assert vault.delete_many(["a", "b", "c"]) == []
        assert list(vault.iter_keys()) == []

    def test_ensure_bucket_with_versioning(
        self, s3_client: Any, seaweed_buckets: BucketFactory
    ) -> None:
        versioned = seaweed_buckets.name("versioned")
        S3Vault(versioned, client=s3_client).ensure_bucket(versioning=True)
        status = s3_client.get_bucket_versioning(Bucket=versioned)["Status"]
        assert status == "Enabled"

    def test_missing_bucket_is_a_clear_storage_error(self, s3_client: Any) -> None:
        vault = S3Vault("no-such-bucket", client=s3_client)
        calls = {
            "put": lambda: vault.put("k", b"x", tags={}),
            "get": lambda: vault.get("k"),
            "get_range": lambda: vault.get_range("k", 0, 1),
            "head": lambda: vault.head("k"),
            "exists": lambda: vault.exists("k"),
            "delete": lambda: vault.delete("k"),
            "delete_many": lambda: vault.delete_many(["k"]),
            "iter_keys": lambda: list(vault.iter_keys()),
            "put_tags": lambda: vault.put_tags("k", {}),
        }
        for name, call in calls.items():
            with pytest.raises(
                StorageError, match="bucket 'no-such-bucket' does not exist"
            ) as caught:
                call()
            assert not isinstance(caught.value, RecordingNotFound), name
            assert type(caught.value).__module__ == "storage.errors", name
            assert type(caught.value.__cause__).__module__.startswith("botocore"), name

    def test_unreachable_endpoint_raises_storage_error(
        self, seaweed_credentials: S3Credentials
    ) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2),
            **seaweed_credentials.client_kwargs(),
        )
        vault = S3Vault("some-bucket", client=client)
        for call in (
            lambda: vault.get("k"),
            lambda: vault.exists("k"),
            lambda: list(vault.iter_keys()),
        ):
            with pytest.raises(StorageError, match="failed") as caught:
                call()
            assert type(caught.value.__cause__).__module__.startswith("botocore")

    @pytest.mark.parametrize("bucket", ["", "ab", "Upper", "under_score", "a..b", "-lead"])
    def test_invalid_bucket_name(self, bucket: str, s3_client: Any) -> None:
        with pytest.raises(ConfigError, match="bucket"):
            S3Vault(bucket, client=s3_client)

    def test_invalid_prefix(self, s3_client: Any) -> None:
        with pytest.raises(ConfigError, match="prefix"):
            S3Vault("good-bucket", "a/../b", client=s3_client)

    def test_open_vault_s3_uses_default_credential_chain(
        self, seaweed_endpoint: str, seaweed_env: None, seaweed_buckets: BucketFactory
    ) -> None:
        opened = seaweed_buckets.name("opened")
        vault = open_vault(f"s3://{opened}/pre/fix", s3_endpoint=seaweed_endpoint)
        assert isinstance(vault, S3Vault)
        assert (vault.bucket, vault.prefix, vault.url) == (
            opened, "pre/fix", f"s3://{opened}/pre/fix",
        )  # fmt: skip
        vault.ensure_bucket()
        vault.put("k", b"payload", tags={"purpose": "qa"})
        assert vault.get("k") == b"payload"


# -- local only --------------------------------------------------------------------


def _all_paths(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


class TestLocalVault:
    def test_layout_and_no_temp_leftovers(self, tmp_path: Path) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("a/b", b"1", tags={"purpose": "qa"})
        vault.put("a/b", b"22", tags={"purpose": "qa"})
        vault.put_tags("a/b", {"purpose": "training"})
        names = [p.relative_to(tmp_path / "v").as_posix() for p in _all_paths(tmp_path / "v")]
        assert names == ["a", "a/b"]  # one file per object: its tags ride in an xattr
        assert (tmp_path / "v" / "a" / "b").read_bytes() == b"22"
        assert json.loads(os.getxattr(tmp_path / "v" / "a" / "b", "user.callvault.tags")) == {
            "purpose": "training"
        }
        assert list(vault.iter_keys()) == ["a/b"]

    def test_tags_files_of_older_objects_and_filesystems_without_xattrs(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        root = tmp_path / "v"
        vault = LocalVault(root)
        # An object written before tags moved into the xattr: its tags file still counts.
        (root / "old").write_bytes(b"o")
        (root / ".tags").mkdir()
        (root / ".tags" / "old.json").write_text('{"purpose": "qa"}')
        assert vault.head("old").tags == {"purpose": "qa"}
        vault.put_tags("old", {"purpose": "training"})  # now in the xattr, file gone
        assert vault.head("old").tags == {"purpose": "training"}
        assert not (root / ".tags" / "old.json").exists()

        def refuse(*_args: object) -> None:
            raise OSError(errno.ENOTSUP, "Operation not supported")

        monkeypatch.setattr(os, "setxattr", refuse)  # e.g. a filesystem without user xattrs
        plain = LocalVault(tmp_path / "w")
        plain.put("a/b", b"1", tags={"purpose": "qa"})
        assert plain.head("a/b").tags == {"purpose": "qa"}
        assert json.loads((tmp_path / "w" / ".tags" / "a" / "b.json").read_text()) == {
            "purpose": "qa"
        }
        plain.put_tags("a/b", {"purpose": "training"})
        assert plain.head("a/b").tags == {"purpose": "training"}
        plain.delete("a/b")
        assert not (tmp_path / "w" / ".tags" / "a" / "b.json").exists()
        assert list(plain.iter_keys()) == []

    def test_a_rename_failing_after_streamed_pieces_stores_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("a/first", b"1", tags={"purpose": "qa"})  # the folder is remembered
        folder, real_replace, calls = tmp_path / "v" / "a", os.replace, []

        def folder_gone_then_replace(src: str, dst: str) -> None:
            calls.append(dst)
            if len(calls) == 1:  # removed between the temp file and the rename (an operator)
                shutil.rmtree(folder)
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", folder_gone_then_replace)
        pieces = iter([b"abc" * 1000, b"def" * 1000])
        with pytest.raises(VaultUnavailable):
            vault.put("a/big", pieces, tags={"purpose": "qa"})
        monkeypatch.undo()
        assert not vault.exists("a/big")  # never an empty object under the key
        vault.put("a/big", [b"abc", b"def"], tags={"purpose": "qa"})  # the retry
        assert vault.get("a/big") == b"abcdef"

    def test_put_tags_after_a_fallback_reads_back_the_new_tags(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("k", b"1", tags={"purpose": "qa"})  # tags in the xattr
        real_setxattr = os.setxattr

        def refuse(*_args: object) -> None:
            raise OSError(errno.ENOTSUP, "Operation not supported")

        monkeypatch.setattr(os, "setxattr", refuse)
        vault.put_tags("k", {"purpose": "training"})  # falls back to the tags file
        assert vault.head("k").tags == {"purpose": "training"}  # not the stale xattr
        with pytest.raises(OSError):
            os.getxattr(tmp_path / "v" / "k", "user.callvault.tags")
        monkeypatch.setattr(os, "setxattr", real_setxattr)
        vault.put_tags("k", {"purpose": "legal"})  # still the tags file (for good)
        assert vault.head("k").tags == {"purpose": "legal"}

    def test_a_transient_xattr_error_is_unavailable_not_a_fallback(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("k", b"1", tags={"purpose": "qa"})
        real_setxattr = os.setxattr
        for code in (errno.ENOSPC, errno.E2BIG, errno.EPERM):

            def refuse(*_args: object, code: int = code) -> None:
                raise OSError(code, os.strerror(code))

            monkeypatch.setattr(os, "setxattr", refuse)
            with pytest.raises(VaultUnavailable):
                vault.put_tags("k", {"purpose": "training"})
            with pytest.raises(VaultUnavailable):
                vault.put("n", b"2", tags={"purpose": "qa"})
            monkeypatch.setattr(os, "setxattr", real_setxattr)
            assert vault.head("k").tags == {"purpose": "qa"} and not vault.exists("n")
        vault.put_tags("k", {"purpose": "training"})  # the xattrs are still used
        assert json.loads(os.getxattr(tmp_path / "v" / "k", "user.callvault.tags")) == {
            "purpose": "training"
        }
        assert not (tmp_path / "v" / ".tags").exists()

    def test_a_folder_removed_behind_its_back_is_created_again(self, tmp_path: Path) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("a/b/c", b"1", tags={"purpose": "qa"})
        vault.delete("a/b/c")
        (tmp_path / "v" / "a" / "b").rmdir()  # e.g. an operator tidying up
        vault.put("a/b/d", b"2", tags={"purpose": "qa"})
        assert vault.get("a/b/d") == b"2" and vault.head("a/b/d").tags == {"purpose": "qa"}

    def test_permissions_do_not_depend_on_umask(self, tmp_path: Path) -> None:
        old = os.umask(0)
        try:
            vault = LocalVault(tmp_path / "new" / "vault")
            vault.put("x/y/z", b"secret", tags={"purpose": "qa"})
        finally:
            os.umask(old)
        root = tmp_path / "new" / "vault"
        for path in [tmp_path / "new", root, *_all_paths(root)]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), path

    def test_failed_write_keeps_old_object_and_leaves_no_temp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("k", b"old", tags={"purpose": "qa"})

        def broken_replace(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(StorageError, match="No space left") as caught:
            vault.put("k", b"new", tags={"purpose": "training"})
        assert isinstance(caught.value.__cause__, OSError)
        monkeypatch.undo()
        assert vault.get("k") == b"old"
        assert vault.head("k").tags == {"purpose": "qa"}
        assert not [p for p in _all_paths(tmp_path / "v") if p.name.startswith(".tmp-")]

    def test_reader_never_sees_a_partial_object(self, tmp_path: Path) -> None:
        vault = LocalVault(tmp_path / "v")
        versions = [b"a" * (1 << 20), b"b" * (1 << 19)]
        vault.put("k", versions[0], tags={})
        seen: list[bytes] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                seen.append(vault.get("k"))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(40):
                vault.put("k", versions[i % 2], tags={})
        finally:
            done.set()
            reader.join()
        assert seen
        assert all(data in versions for data in seen)

    def test_key_that_is_also_a_prefix(self, tmp_path: Path) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("a/b", b"x", tags={})
        with pytest.raises(StorageError, match="prefix of other keys"):
            vault.put("a", b"y", tags={})
        with pytest.raises(StorageError, match="extends an existing key"):
            vault.put("a/b/c", b"y", tags={})
        with pytest.raises(RecordingNotFound):
            vault.get("a")

    def test_root_that_is_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(StorageError, match="not a folder|cannot create"):
            LocalVault(tmp_path / "file")

    def test_corrupt_tags_file(self, tmp_path: Path) -> None:
        vault = LocalVault(tmp_path / "v")
        vault.put("k", b"x", tags={"purpose": "qa"})
        os.setxattr(tmp_path / "v" / "k", "user.callvault.tags", b"{not json")
        with pytest.raises(StorageError, match="not valid JSON"):
            vault.head("k")
        os.removexattr(tmp_path / "v" / "k", "user.callvault.tags")  # an older object's file
        (tmp_path / "v" / ".tags").mkdir()
        (tmp_path / "v" / ".tags" / "k.json").write_text("[1]")
        with pytest.raises(StorageError, match="not a JSON object"):
            vault.head("k")


class TestOpenVault:
    def test_file_url(self, tmp_path: Path) -> None:
        vault = open_vault((tmp_path / "my vault").as_uri())
        assert isinstance(vault, LocalVault)
        assert vault.root == tmp_path / "my vault"
        assert vault.url == (tmp_path / "my vault").as_uri()
        assert open_vault(f"file://localhost{tmp_path}/v2").url == (tmp_path / "v2").as_uri()

    @pytest.mark.parametrize(
        "url",
        ["", "file://relative/path", "file:relative", "ftp://host/x", "/abs/path",
         "s3://Bad_Bucket", "file:///tmp/x?mode=1", "memory://"],
    )  # fmt: skip
    def test_bad_urls(self, url: str) -> None:
        with pytest.raises(ConfigError):
            open_vault(url)


def _all_names(vault: Vault) -> list[str]:
    """Every file name under a LocalVault root (temp files included); [] for S3."""
    root = getattr(vault, "root", None)
    return [str(p) for p in root.rglob("*")] if root is not None else []


def test_local_flush_syncs_exactly_the_files_put_since_the_last_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group commit of a folder vault flushes its own batch (each file, each folder),
    not the whole filesystem: other programs' and other workers' dirty pages wait."""
    vault = LocalVault(tmp_path / "v")
    vault.put("a/one", b"1", tags={"purpose": "qa"}, durable=False)
    vault.put("b/two", b"2", tags={"purpose": "qa"}, durable=False)
    vault.put("b/gone", b"3", tags={"purpose": "qa"}, durable=False)
    vault.delete("b/gone")  # deleted before the flush: nothing to sync
    (tmp_path / "other").write_bytes(b"not the vault's")
    synced = record_syncs(monkeypatch)
    vault.flush()
    root = tmp_path / "v"
    assert sorted(synced) == sorted(  # the root: it gained the new folders a/ and b/
        [str(root / "a" / "one"), str(root / "b" / "two"), str(root / "a"), str(root / "b"),
         str(root)]
    )  # fmt: skip
    synced.clear()
    vault.flush()  # nothing put since
    assert synced == []
    vault.put("a/three", b"4", tags={"purpose": "qa"}, durable=False)
    vault.put("c/d/four", b"5", tags={"purpose": "qa"}, durable=False)
    vault.flush()  # a/ existed; c/ and c/d/ are new entries in the root and in c/
    assert sorted(synced) == sorted(
        [str(root / "a" / "three"), str(root / "c" / "d" / "four"), str(root / "a"),
         str(root / "c" / "d"), str(root / "c"), str(root)]
    )  # fmt: skip


def test_a_durable_put_into_new_folders_syncs_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder created for an object is an entry in its parent: without that parent's
    fsync a crash can lose the folder, and the object acknowledged inside it."""
    vault = LocalVault(tmp_path / "v")
    root = tmp_path / "v"
    synced = record_syncs(monkeypatch, ("fsync",))
    vault.put("rec/acme/ab/one", b"1", tags={"purpose": "qa"})
    assert synced[1:] == [str(root / "rec" / "acme" / "ab"), str(root / "rec" / "acme"),
                          str(root / "rec"), str(root)]  # fmt: skip
    synced.clear()
    vault.put("rec/acme/ab/two", b"2", tags={"purpose": "qa"})
    assert synced[1:] == [str(root / "rec" / "acme" / "ab")]  # nothing new above it


def test_a_flush_syncs_the_parent_of_a_folder_created_again_behind_the_vaults_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remembered folder removed meanwhile is created again by the write itself: its
    parent gained an entry, which the group flush makes durable with the object."""
    vault = LocalVault(tmp_path / "v")
    root = tmp_path / "v"
    vault.put("rec/ab/one", b"1", tags={"purpose": "qa"})
    vault.delete("rec/ab/one")
    (root / "rec" / "ab").rmdir()  # e.g. an operator tidying up
    synced = record_syncs(monkeypatch)
    vault.put("rec/ab/two", b"2", tags={"purpose": "qa"}, durable=False)
    assert synced == []
    vault.flush()
    assert sorted(synced) == sorted(
        [str(root / "rec" / "ab" / "two"), str(root / "rec" / "ab"), str(root / "rec")]
    )
    assert vault.get("rec/ab/two") == b"2"


def test_a_flush_syncs_the_new_tags_folders_where_the_filesystem_has_no_xattrs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without user xattrs the tags go to .tags/<key>.json: the folders made for it are
    entries in their parents, flushed with the object like its own folders."""

    def no_xattrs(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    vault = LocalVault(tmp_path / "v")
    root = tmp_path / "v"
    synced = record_syncs(monkeypatch)
    vault.put("rec/ab/one", b"1", tags={"purpose": "qa"}, durable=False)
    assert synced == []
    vault.flush()
    tags = root / ".tags"
    assert sorted(synced) == sorted(
        [str(root / "rec" / "ab" / "one"), str(tags / "rec" / "ab" / "one.json"),
         str(root / "rec" / "ab"), str(tags / "rec" / "ab"),  # the files' folders
         str(root / "rec"), str(root), str(tags / "rec"), str(tags)]  # their new entries
    )  # fmt: skip
    assert vault.head("rec/ab/one").tags == {"purpose": "qa"}
