"""The S3 vault: AWS S3 or any S3-compatible server (MinIO, moto), through boto3.

:class:`S3Vault` implements :class:`storage.vault.base.Vault` (same contract, same tests
as the local vault). What a caller may rely on beyond the protocol:

- Objects live at ``<prefix>/<key>`` in the bucket; tags are sent with
  ``PutObject`` (``Tagging``), so an object and its tags appear together.
- ``delete`` and ``delete_many`` remove every version and delete marker of a key
  (multi-object delete, 1000 entries per request), so crypto-shredded recordings
  do not linger as old versions.
- No botocore exception escapes: ``ClientError``/``BotoCoreError`` become
  :class:`RecordingNotFound` (missing key) or :class:`StorageError` (everything
  else; a missing bucket is named in the message), chained with ``from exc``.
- Credentials come from the usual boto3 chain (env, profile, instance role);
  no server-side encryption is asked for: objects are encrypted client side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import SplitResult, urlencode

from callvault.errors import ConfigError
from storage import _aws
from storage._aws import AwsFailure, Failure
from storage.errors import RecordingNotFound, StorageError, VaultUnavailable
from storage.types import ObjectInfo
from storage.vault.base import validate_key, validate_prefix, validate_tags

__all__ = ["S3Vault", "make_s3_client"]

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def make_s3_client(
    *, endpoint_url: str | None = None, region: str = "us-east-1", max_attempts: int = 5
) -> Any:
    """A boto3 S3 client with retries, timeouts and a pool sized for a worker
    (:func:`storage._aws.make_client`).

    Raises:
        StorageError: boto3 could not build the client (bad endpoint or region).
    """
    return _aws.make_client(
        "s3", endpoint_url=endpoint_url, region=region, max_attempts=max_attempts
    )


class S3Vault:
    """A :class:`storage.vault.Vault` in ``bucket`` under ``prefix``.

    ``client`` is a boto3 S3 client; by default one is made with
    :func:`make_s3_client` from ``endpoint_url`` and ``region``.

    Raises:
        ConfigError: the bucket name or prefix is invalid.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
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
        self._client = (
            client
            if client is not None
            else make_s3_client(endpoint_url=endpoint_url, region=region)
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        parts: SplitResult,
        *,
        s3_endpoint: str | None = None,
        region: str = "us-east-1",
        **options: object,
    ) -> S3Vault:
        """The vault ``s3://bucket[/prefix]`` names, on ``s3_endpoint`` (None: AWS).

        Raises:
            ConfigError: the bucket name or prefix is invalid.
        """
        del url, options
        return cls(parts.netloc, parts.path.strip("/"), endpoint_url=s3_endpoint, region=region)

    def __repr__(self) -> str:
        return f"S3Vault({self.url!r})"

    # -- Vault ---------------------------------------------------------------------

    def flush(self) -> None:
        """Nothing to do: S3 acknowledges a PUT only once it is durable."""

    def put(
        self, key: str, data: bytes, *, tags: Mapping[str, str], durable: bool = True
    ) -> ObjectInfo:
        del durable  # every PUT is durable when S3 answers
        full = self._full_key(key)
        checked = validate_tags(tags)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageError(f"vault data must be bytes, not {type(data).__name__}")
        body = bytes(data)
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": body,
            "ContentType": "application/octet-stream",
        }
        if checked:
            request["Tagging"] = urlencode(checked)
        with self._errors("put", key):
            response = self._client.put_object(**request)
        return ObjectInfo(
            key=key, size=len(body), tags=checked, version_id=response.get("VersionId")
        )

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
        full = self._full_key(key)
        with self._errors("delete", key):
            entries = _aws.list_versions(self._client, self.bucket, full)
        failed = self._delete_entries(entries)
        if failed:
            raise StorageError(f"could not delete {self._where(key)}: {failed[full]}")

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        if isinstance(keys, str):
            raise StorageError("delete_many takes a sequence of keys, not a single str")
        fulls = {self._full_key(key): key for key in keys}
        failed: list[str] = []
        entries: list[dict[str, str]] = []
        with self._errors("delete_many", None):
            versioned = self._maybe_versioned()
            for full, key in fulls.items():
                if not versioned:
                    entries.append({"Key": full})
                    continue
                try:
                    entries.extend(_aws.list_versions(self._client, self.bucket, full))
                except Exception as exc:
                    failure = _aws.failure_of(exc)
                    if failure is None or failure.kind in (Failure.NO_BUCKET, Failure.UNREACHABLE):
                        raise
                    failed.append(key)
        errors = self._delete_entries(entries)
        failed.extend(fulls[full] for full in errors if full in fulls and fulls[full] not in failed)
        return failed

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

    def put_tags(self, key: str, tags: Mapping[str, str]) -> None:
        full = self._full_key(key)
        checked = validate_tags(tags)
        tag_set = [{"Key": name, "Value": value} for name, value in checked.items()]
        with self._errors("put_tags", key):
            self._client.put_object_tagging(
                Bucket=self.bucket, Key=full, Tagging={"TagSet": tag_set}
            )

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
                if failure is None or failure.code != "BucketAlreadyOwnedByYou":
                    raise
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
        """False only when versioning was never enabled (no versions to hunt for)."""
        try:
            status = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except Exception as exc:
            failure = _aws.failure_of(exc)
            if failure is None or failure.kind in (Failure.NO_BUCKET, Failure.UNREACHABLE):
                raise
            return True  # not allowed to ask: assume versions may exist
        return status is not None

    def _delete_entries(self, entries: Sequence[dict[str, str]]) -> dict[str, str]:
        """Delete in batches; return ``{full key: error}`` for entries S3 refused."""
        with self._errors("delete", None):
            return _aws.delete_versions(self._client, self.bucket, entries)
