"""The S3 vault: AWS S3 or any S3-compatible server (MinIO, moto), through boto3.

:class:`S3Vault` implements :class:`storage.vault.base.Vault` (same contract, same tests
as the local vault). What a caller may rely on beyond the protocol:

- Objects live at ``<prefix>/<key>`` in the bucket; tags are sent with
  ``PutObject`` (``Tagging``), so an object and its tags appear together.
- ``delete`` and ``delete_many`` remove every version and delete marker of a key
  (multi-object delete), so crypto-shredded recordings do not linger as old
  versions. The version ids the catalog kept (``versions=``) are deleted by id; a
  listing per prefix (:func:`storage._aws.versions_of`: it skips ahead over keys it
  was not asked about, never one request per key where the keys lie close) catches
  versions written outside callvault. A batch is split into ``workers`` sorted runs,
  each listed and deleted by its own thread; a run that S3 fails as a whole (after
  botocore's retries: refused, or unreachable) fails only its own keys, which
  ``delete_many`` returns for the caller to retry; a missing bucket fails the call.
- ``put`` returns the ``VersionId`` S3 gave the object (``ObjectInfo.version_id``);
  ``put_tags`` and the legal-hold calls take it, so they act on that version.
- Object Lock: :meth:`S3Vault.object_lock_enabled` says whether the bucket has it;
  :meth:`S3Vault.set_legal_holds` sets or clears the legal hold of every version of
  keys. S3 then refuses to delete a held version, whoever asks.
- No botocore exception escapes: ``ClientError``/``BotoCoreError`` become
  :class:`RecordingNotFound` (missing key) or :class:`StorageError` (everything
  else; a missing bucket is named in the message), chained with ``from exc``.
- Credentials come from the usual boto3 chain (env, profile, instance role);
  no server-side encryption is asked for: objects are encrypted client side.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlencode

from callvault.errors import ConfigError
from storage import _aws
from storage._aws import AwsFailure, Failure
from storage.errors import RecordingNotFound, StorageError, VaultUnavailable
from storage.types import ObjectInfo, StoredObject
from storage.vault.base import (
    HashedPieces,
    check_data,
    validate_key,
    validate_prefix,
    validate_tags,
)

__all__ = ["S3Vault", "make_s3_client"]

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MIN_RUN = 32  # keys per parallel run of a delete: fewer are not worth a thread
#: Streamed puts of at least this many bytes become a multipart upload...
MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: ...of parts this large (S3's minimum is 5 MiB for every part but the last).
MULTIPART_PART_SIZE = 8 * 1024 * 1024
_T = TypeVar("_T")


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    max_attempts: int = _aws.MAX_ATTEMPTS,
    connect_timeout: float = _aws.CONNECT_TIMEOUT,
    read_timeout: float = _aws.READ_TIMEOUT,
    parse_timestamps: bool = True,
) -> Any:
    """A boto3 S3 client with retries, timeouts and a pool sized for a worker
    (:func:`storage._aws.make_client`; the vault's own client leaves timestamps as
    text, which it reads with :func:`storage._aws.timestamp`).

    Raises:
        StorageError: boto3 could not build the client (bad endpoint or region).
    """
    return _aws.make_client(
        "s3",
        endpoint_url=endpoint_url,
        region=region,
        max_attempts=max_attempts,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        parse_timestamps=parse_timestamps,
    )


class S3Vault:
    """A :class:`storage.vault.Vault` in ``bucket`` under ``prefix``.

    ``client`` is a boto3 S3 client; by default one is made with
    :func:`make_s3_client` from ``endpoint_url`` and ``region``. ``workers`` threads
    list and delete the runs of one ``delete_many`` in parallel.

    Raises:
        ConfigError: the bucket name or prefix is invalid.
    """

    puts_wait_on_network = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        workers: int = 8,
    ) -> None:
        if not isinstance(bucket, str) or not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise ConfigError(
                f"invalid S3 bucket name {bucket!r}: 3-63 characters of a-z, 0-9, '.' and '-'"
            )
        prefix = prefix.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except StorageError as exc:
                raise ConfigError(f"invalid S3 vault prefix {prefix!r}: {exc}") from None
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.workers = max(1, workers)
        self._client = (
            client
            if client is not None
            else make_s3_client(endpoint_url=endpoint_url, region=region, parse_timestamps=False)
        )
        self._versioned = False  # once seen on, versions may exist for good
        self._object_lock: bool | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        parts: SplitResult,
        *,
        s3_endpoint: str | None = None,
        region: str = "us-east-1",
        max_attempts: int = _aws.MAX_ATTEMPTS,
        connect_timeout: float = _aws.CONNECT_TIMEOUT,
        read_timeout: float = _aws.READ_TIMEOUT,
        **options: object,
    ) -> S3Vault:
        """The vault ``s3://bucket[/prefix]`` names, on ``s3_endpoint`` (None: AWS), its
        client with these retries and timeouts.

        Raises:
            ConfigError: the bucket name or prefix is invalid.
            StorageError: the client could not be made.
        """
        del url, options
        client = make_s3_client(
            endpoint_url=s3_endpoint,
            region=region,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            parse_timestamps=False,
        )
        return cls(
            parts.netloc,
            parts.path.strip("/"),
            client=client,
            endpoint_url=s3_endpoint,
            region=region,
        )

    def __repr__(self) -> str:
        return f"S3Vault({self.url!r})"

    # -- Vault ---------------------------------------------------------------------

    def flush(self) -> None:
        """Nothing to do: S3 acknowledges a PUT only once it is durable."""

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        *,
        tags: Mapping[str, str],
        durable: bool = True,
    ) -> ObjectInfo:
        del durable  # every PUT is durable when S3 answers
        full = self._full_key(key)
        checked = validate_tags(tags)
        check_data(data)
        if isinstance(data, bytes | bytearray | memoryview):
            return self._put_object(key, full, bytes(data), checked)
        # Pieces: one PUT if they add up to less than a part, else a multipart upload of
        # MULTIPART_PART_SIZE parts (constant memory, whatever the recording's length).
        buffer = bytearray()
        pieces = iter(data)
        for piece in pieces:
            buffer += piece
            if len(buffer) >= MULTIPART_THRESHOLD:
                return self._put_multipart(key, full, buffer, pieces, checked)
        known = data.sha256 if isinstance(data, HashedPieces) else None
        return self._put_object(key, full, bytes(buffer), checked, sha256=known)

    def _put_object(
        self,
        key: str,
        full: str,
        body: bytes,
        checked: dict[str, str],
        *,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """One PUT of ``body``; ``sha256`` (hex), when the caller computed it of exactly
        these bytes, is sent as ``ChecksumSHA256`` (S3 checks it) and signs the payload
        (:func:`storage._aws._known_payload_signer`): botocore hashes nothing again."""
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": body,
            "ContentType": "application/octet-stream",
        }
        if sha256 is not None:
            request["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        if checked:
            request["Tagging"] = urlencode(checked)
        with self._errors("put", key):
            response = self._client.put_object(**request)
        return ObjectInfo(
            key=key, size=len(body), tags=checked, version_id=response.get("VersionId")
        )

    def _put_multipart(
        self,
        key: str,
        full: str,
        buffer: bytearray,
        rest: Iterator[bytes],
        checked: dict[str, str],
    ) -> ObjectInfo:
        """Upload ``buffer`` and then ``rest`` in parts; abort on any failure (of S3 or
        of the pieces), so no partial object or stray parts are left."""
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "ContentType": "application/octet-stream",
        }
        if checked:
            request["Tagging"] = urlencode(checked)
        with self._errors("put", key):
            upload = self._client.create_multipart_upload(**request)["UploadId"]
        parts: list[dict[str, Any]] = []
        size = 0

        def send(body: bytes) -> None:
            nonlocal size
            with self._errors("put", key):
                answer = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload,
                    PartNumber=len(parts) + 1,
                    Body=body,
                )
            parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
            size += len(body)

        try:
            for piece in rest:
                buffer += piece
                while len(buffer) >= MULTIPART_PART_SIZE:
                    send(bytes(buffer[:MULTIPART_PART_SIZE]))
                    del buffer[:MULTIPART_PART_SIZE]
            if buffer or not parts:
                send(bytes(buffer))
            with self._errors("put", key):
                response = self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload)
            raise
        return ObjectInfo(key=key, size=size, tags=checked, version_id=response.get("VersionId"))

    def get(self, key: str) -> bytes:
        full = self._full_key(key)
        with self._errors("get", key):
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            return self._read_body(response)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        full = self._full_key(key)
        if not isinstance(start, int) or not isinstance(end, int) or start < 0 or end < start:
            raise StorageError(f"bad byte range {start}-{end}: need 0 <= start <= end")
        with self._errors("get_range", key):
            response = self._client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={start}-{end}"
            )
            if response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200:
                # The server ignored Range (some S3 clones do on small objects): cut here.
                data = self._read_body(response)
                if start >= len(data):
                    raise StorageError(
                        f"range {start}-{end} not satisfiable: object {key!r} has {len(data)} bytes"
                    )
                return data[start : end + 1]
            return self._read_body(response)

    def head(self, key: str) -> ObjectInfo:
        full = self._full_key(key)
        response = self._head_object(full, key)
        with self._errors("head", key):
            request: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
            if response.get("VersionId"):
                request["VersionId"] = response["VersionId"]
            tagging = self._client.get_object_tagging(**request)
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            tags={tag["Key"]: tag["Value"] for tag in tagging.get("TagSet", [])},
            version_id=response.get("VersionId"),
        )

    def exists(self, key: str) -> bool:
        try:
            self._head_object(self._full_key(key), key)
        except RecordingNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        failed = self.delete_many([key])
        if failed:
            raise StorageError(f"could not delete {self._where(key)}: S3 refused a version")

    def delete_many(
        self, keys: Sequence[str], *, versions: Mapping[str, str | None] | None = None
    ) -> list[str]:
        if isinstance(keys, str):
            raise StorageError("delete_many takes a sequence of keys, not a single str")
        fulls = {self._full_key(key): key for key in keys}
        known = {
            self._full_key(key): version for key, version in (versions or {}).items() if version
        }
        if not fulls:
            return []
        runs = self._runs(sorted(fulls))
        with self._errors("delete_many", None):
            if self._maybe_versioned():
                failed = self._in_parallel(lambda run: self._delete_run(run, known), runs)
            else:
                failed = self._in_parallel(self._delete_plain_run, runs)
        return [fulls[full] for full in fulls if full in failed]

    def _delete_run(self, run: list[str], known: Mapping[str, str]) -> dict[str, str]:
        """List the versions of one sorted run of keys and delete them (and the known
        ones, which a lagging listing might miss); ``{full key: error}`` of failures.
        A run S3 fails as a whole (after botocore's retries) fails its own keys only."""
        try:
            listed = _aws.versions_of(self._client, self.bucket, run, prefix=_common(run))
            entries: list[dict[str, str]] = []
            for full in run:
                ids = dict.fromkeys(entry["VersionId"] for entry in listed.get(full, []))
                if full in known:
                    ids[known[full]] = None
                entries.extend({"Key": full, "VersionId": version} for version in ids)
            return _aws.delete_versions(self._client, self.bucket, entries)
        except Exception as exc:
            return self._run_failed(exc, run)

    def _delete_plain_run(self, run: list[str]) -> dict[str, str]:
        """Delete one run of keys on a bucket that never had versioning."""
        try:
            return _aws.delete_versions(self._client, self.bucket, [{"Key": f} for f in run])
        except Exception as exc:
            return self._run_failed(exc, run)

    def _run_failed(self, exc: Exception, run: list[str]) -> dict[str, str]:
        failure = _aws.failure_of(exc)
        if failure is None or failure.kind is Failure.NO_BUCKET:
            raise exc  # the caller translates it: the whole operation failed
        return {full: str(failure) for full in run}

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        with self._errors("iter_keys", None):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(base) :]
                    try:
                        validate_key(key)
                    except StorageError:
                        continue  # not written through a vault; get() could not read it
                    yield key

    def put_tags(self, key: str, tags: Mapping[str, str], *, version_id: str | None = None) -> None:
        full = self._full_key(key)
        checked = validate_tags(tags)
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Tagging": {
                "TagSet": [{"Key": name, "Value": value} for name, value in checked.items()]
            },
        }
        if version_id:
            request["VersionId"] = version_id
        with self._errors("put_tags", key):
            self._client.put_object_tagging(**request)

    def update_tags(
        self, key: str, tags: Mapping[str, str], *, version_id: str | None = None
    ) -> dict[str, str]:
        full = self._full_key(key)
        changes = validate_tags(tags)
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if version_id:
            request["VersionId"] = version_id
        with self._errors("update_tags", key):
            current = self._client.get_object_tagging(**request).get("TagSet", [])
        merged = validate_tags({**{t["Key"]: t["Value"] for t in current}, **changes})
        self.put_tags(key, merged, version_id=version_id)
        return merged

    def iter_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        validate_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        with self._errors("iter_objects", None):
            if not self._maybe_versioned():
                paginator = self._client.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                    for item in page.get("Contents", []):
                        key = self._vault_key(item["Key"], base)
                        if key is not None:
                            yield StoredObject(
                                key, int(item["Size"]), _aws.timestamp(item["LastModified"])
                            )
                return
            pending: dict[str, list[dict[str, Any]]] = {}
            paginator = self._client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                for item in page.get("Versions", []):
                    pending.setdefault(item["Key"], []).append(item)
                last = page.get("NextKeyMarker") if page.get("IsTruncated") else None
                for full in sorted(k for k in pending if last is None or k < last):
                    found = self._stored(full, pending.pop(full), base)
                    if found is not None:
                        yield found
            for full in sorted(pending):
                found = self._stored(full, pending[full], base)
                if found is not None:
                    yield found

    # -- Object Lock -----------------------------------------------------------------

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock (asked once, then remembered).

        Raises:
            StorageError: S3 failed (a missing bucket is named).
        """
        if self._object_lock is None:
            with self._errors("get_object_lock_configuration", None):
                try:
                    config = self._client.get_object_lock_configuration(Bucket=self.bucket)
                except Exception as exc:
                    failure = _aws.failure_of(exc)
                    if failure is None or failure.kind in (
                        Failure.NO_BUCKET,
                        Failure.UNREACHABLE,
                    ):
                        raise
                    config = {}  # ObjectLockConfigurationNotFoundError and the like
            lock = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            self._object_lock = lock == "Enabled"
        return self._object_lock

    def set_legal_holds(
        self, keys: Sequence[str], *, on: bool, versions: Mapping[str, str | None] | None = None
    ) -> list[str]:
        """Set (``on``) or clear the Object Lock legal hold of every version of each
        key (those listed, and the known ``versions``); returns the keys S3 refused.
        A key without any version is skipped.

        Raises:
            StorageError: bad keys, the bucket has no Object Lock, or S3 failed as a whole.
        """
        fulls = {self._full_key(key): key for key in keys}
        known = {
            self._full_key(key): version for key, version in (versions or {}).items() if version
        }
        if not fulls:
            return []
        if not self.object_lock_enabled():
            raise StorageError(f"S3 bucket {self.bucket!r} has no Object Lock: no legal holds")
        status = "ON" if on else "OFF"

        def hold_run(run: list[str]) -> dict[str, str]:
            with self._errors("set_legal_holds", None):
                listed = _aws.versions_of(self._client, self.bucket, run, prefix=_common(run))
            errors: dict[str, str] = {}
            for full in run:
                ids = dict.fromkeys(
                    entry["VersionId"]
                    for entry in listed.get(full, [])
                    if not entry["IsDeleteMarker"]
                )
                if full in known:
                    ids[known[full]] = None
                for version in ids:
                    try:
                        self._client.put_object_legal_hold(
                            Bucket=self.bucket,
                            Key=full,
                            VersionId=version,
                            LegalHold={"Status": status},
                        )
                    except Exception as exc:
                        failure = _aws.failure_of(exc)
                        if failure is None:
                            raise
                        if failure.kind in (Failure.UNREACHABLE, Failure.NO_BUCKET):
                            raise self._translate(failure, "set_legal_holds", None) from exc
                        if failure.kind is not Failure.NOT_FOUND:  # a version gone meanwhile
                            errors[full] = str(failure)
            return errors

        failed = self._in_parallel(hold_run, self._runs(sorted(fulls)))
        return [fulls[full] for full in fulls if full in failed]

    def legal_hold_status(self, key: str, *, version_id: str | None = None) -> bool:
        """Whether the legal hold of the key's version (default: the current one) is on.

        Raises:
            RecordingNotFound: no such object or version.
            StorageError: S3 failed.
        """
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if version_id:
            request["VersionId"] = version_id
        with self._errors("get_legal_hold", key):
            try:
                answer = self._client.get_object_legal_hold(**request)
            except Exception as exc:
                failure = _aws.failure_of(exc)
                if failure is None or "LegalHold" not in failure.code:
                    raise
                return False  # NoSuchObjectLegalHold: never held
        return bool(answer.get("LegalHold", {}).get("Status") == "ON")

    # -- setup ---------------------------------------------------------------------

    def ensure_bucket(self, versioning: bool = False) -> None:
        """Create the bucket if it does not exist (and turn versioning on if asked).

        For tests, development and ``callvault``'s init step; production buckets are
        usually made by infrastructure code.

        Raises:
            StorageError: the bucket exists but belongs to someone else, or S3 failed.
        """
        request: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with self._errors("create_bucket", None):
            try:
                self._client.create_bucket(**request)
            except Exception as exc:
                failure = _aws.failure_of(exc)
                if failure is None or failure.code not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",  # SeaweedFS's answer to its owner, too
                ):
                    raise
                self._client.head_bucket(Bucket=self.bucket)  # ours, if we may use it
            if versioning:
                self._client.put_bucket_versioning(
                    Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
                )

    # -- helpers -------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str | None) -> str:
        if key is None:
            return self.url
        return f"s3://{self.bucket}/{self._full_key(key)}"

    def _errors(self, action: str, key: str | None) -> AbstractContextManager[None]:
        """Translate botocore errors raised in the block into storage errors."""
        return _aws.translated(lambda failure: self._translate(failure, action, key))

    def _translate(self, failure: AwsFailure, action: str, key: str | None) -> StorageError:
        if failure.kind is Failure.NO_BUCKET:
            return self._no_such_bucket()
        if failure.kind is Failure.NOT_FOUND and key is not None:
            return RecordingNotFound(f"no vault object {key!r} in {self.url}")
        if failure.kind is Failure.INVALID_RANGE:
            return StorageError(f"byte range not satisfiable for {self._where(key)}")
        error = VaultUnavailable if failure.transient else StorageError
        return error(f"S3 {action} on {self._where(key)} failed: {failure}")

    def _no_such_bucket(self) -> StorageError:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return VaultUnavailable(f"S3 bucket {self.bucket!r} does not exist{where}")

    def _head_object(self, full: str, key: str) -> dict[str, Any]:
        """HEAD one object. A 404 carries no error code in its body, so ask the bucket:
        a missing bucket is a failure, a missing key is :class:`RecordingNotFound`."""
        try:
            with self._errors("head", key):
                response: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=full)
                return response
        except RecordingNotFound:
            with _aws.translated(self._bucket_failure):
                self._client.head_bucket(Bucket=self.bucket)
            raise

    def _bucket_failure(self, failure: AwsFailure) -> StorageError:
        if failure.kind in (Failure.NOT_FOUND, Failure.NO_BUCKET):
            return self._no_such_bucket()
        return self._translate(failure, "head_bucket", None)

    def _read_body(self, response: Mapping[str, Any]) -> bytes:
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _maybe_versioned(self) -> bool:
        """False only when versioning was never enabled (no versions to hunt for);
        once seen on it stays on (S3 can suspend versioning, never undo it)."""
        if self._versioned:
            return True
        try:
            status = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except Exception as exc:
            failure = _aws.failure_of(exc)
            if failure is None or failure.kind in (Failure.NO_BUCKET, Failure.UNREACHABLE):
                raise
            return True  # not allowed to ask: assume versions may exist
        self._versioned = status is not None
        return self._versioned

    def _runs(self, fulls: list[str]) -> list[list[str]]:
        """Sorted keys cut into at most ``workers`` contiguous runs of >= _MIN_RUN keys."""
        count = max(1, min(self.workers, len(fulls) // _MIN_RUN))
        size = -(-len(fulls) // count)
        return [fulls[start : start + size] for start in range(0, len(fulls), size)]

    def _in_parallel(
        self, work: Callable[[list[str]], dict[str, _T]], runs: list[list[str]]
    ) -> dict[str, _T]:
        """``work`` on every run (in threads when there are several), results merged."""
        if len(runs) == 1:
            return work(runs[0])
        merged: dict[str, _T] = {}
        with ThreadPoolExecutor(len(runs), thread_name_prefix="s3-vault") as pool:
            for result in pool.map(work, runs):
                merged.update(result)
        return merged

    def _vault_key(self, full: str, base: str) -> str | None:
        key = full[len(base) :]
        try:
            validate_key(key)
        except StorageError:
            return None  # not written through a vault; get() could not read it
        return key

    def _stored(self, full: str, items: list[dict[str, Any]], base: str) -> StoredObject | None:
        key = self._vault_key(full, base)
        if key is None or not items:
            return None
        ordered = sorted(items, key=lambda item: _aws.timestamp(item["LastModified"]), reverse=True)
        return StoredObject(
            key,
            int(ordered[0].get("Size", 0) or 0),
            _aws.timestamp(ordered[0]["LastModified"]),
            tuple(str(item["VersionId"]) for item in ordered),
        )


def _common(fulls: list[str]) -> str:
    """The longest prefix every key of a sorted run shares (the listing's ``Prefix``)."""
    return os.path.commonprefix([fulls[0], fulls[-1]]) if fulls else ""
