"""boto3 at the boundary: the one place AWS clients are built and botocore errors read.

Every module that talks to AWS (the S3 vault, S3 landing roots, the KMS keyring)
builds its client with :func:`make_client` and turns botocore's exceptions into its
own storage error through :func:`translated` and the one table :data:`FAILURES`
(as s3fs's ``translate_boto_error`` does), so no caller ever sees botocore and no
module sniffs error codes on its own.

What a caller may rely on:

- :func:`make_client` sets retries (``standard`` mode), connect and read timeouts
  and the connection pool explicitly; a custom endpoint (SeaweedFS, MinIO, moto)
  gets path-style addressing.
- :func:`translated` catches only botocore's ``ClientError`` and ``BotoCoreError``;
  everything else passes through untouched. The callback receives an
  :class:`AwsFailure` (what kind of failure, the service's error code and message).
- :func:`delete_versions` deletes exact ``(key, version)`` entries in batches of
  :data:`DELETE_BATCH_SIZE` and returns what S3 refused.
- :func:`versions_of` finds every version and delete marker of a sorted run of keys
  with as few ``ListObjectVersions`` requests as the key space allows: one listing per
  prefix that skips ahead (``KeyMarker``) over the keys it was not asked about, never
  one request per key where the keys lie close together (see its docstring).

Retries and timeouts (:func:`make_client` defaults, every client callvault builds):
``standard`` retry mode with :data:`MAX_ATTEMPTS` attempts (throttling, 5xx, connection
resets and read timeouts are retried with exponential back-off and jitter),
:data:`CONNECT_TIMEOUT` s to connect and :data:`READ_TIMEOUT` s between bytes of an
answer, a pool of :data:`POOL_CONNECTIONS` connections (the vault's parallel deletes
and listings share it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storage.errors import StorageError

__all__ = [
    "AwsFailure",
    "Failure",
    "FAILURES",
    "DELETE_BATCH_SIZE",
    "make_client",
    "translated",
    "failure_of",
    "list_versions",
    "timestamp",
    "versions_of",
    "delete_versions",
    "MAX_ATTEMPTS",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "POOL_CONNECTIONS",
]

DELETE_BATCH_SIZE = 1000  # S3's limit per DeleteObjects request
MAX_ATTEMPTS = 5  # first try + 4 retries (botocore "standard" mode)
CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 60.0  # seconds without a byte of the answer
POOL_CONNECTIONS = 32
#: ``versions_of``: listed entries per wanted key under which one contiguous listing
#: is cheaper than skipping from key to key (one request per key).
_DENSE_GAP = 16
_PROBE_KEYS = 64  # the first page of a run: enough entries to measure the gap
_SKIP_PAGE = 8  # a page while skipping: the wanted key's versions, and then some


class Failure(StrEnum):
    """What kind of failure an AWS error is, whatever service raised it."""

    NOT_FOUND = "not-found"  # the key, version or KMS key does not exist
    NO_BUCKET = "no-bucket"
    INVALID_RANGE = "invalid-range"
    BAD_CIPHERTEXT = "bad-ciphertext"  # KMS: wrong context, wrong key or tampered blob
    DENIED = "denied"  # credentials or policy refused the call
    REFUSED = "refused"  # any other answer of the service (4xx/5xx after retries)
    UNREACHABLE = "unreachable"  # no answer: connection, timeout, bad endpoint


#: The one table from a service's error code to the kind of failure it means.
FAILURES: Mapping[str, Failure] = {
    "NoSuchKey": Failure.NOT_FOUND,
    "NotFound": Failure.NOT_FOUND,
    "404": Failure.NOT_FOUND,
    "NoSuchVersion": Failure.NOT_FOUND,
    "NotFoundException": Failure.NOT_FOUND,
    "NoSuchBucket": Failure.NO_BUCKET,
    "InvalidRange": Failure.INVALID_RANGE,
    "InvalidCiphertextException": Failure.BAD_CIPHERTEXT,
    "IncorrectKeyException": Failure.BAD_CIPHERTEXT,
    "AccessDenied": Failure.DENIED,
    "AccessDeniedException": Failure.DENIED,
    "403": Failure.DENIED,
    "InvalidAccessKeyId": Failure.DENIED,
    "SignatureDoesNotMatch": Failure.DENIED,
}


#: Error codes that mean "try again later", whatever the HTTP status says.
_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "InternalError",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KMSInvalidStateException",
        "DisabledException",
        "KeyUnavailableException",
    }
)


@dataclass(frozen=True)
class AwsFailure:
    """One botocore error, read once: its kind, the service's code and message, and
    the HTTP status (0 when there was no answer)."""

    kind: Failure
    code: str
    message: str
    status: int = 0

    def __str__(self) -> str:
        return f"{self.code} {self.message}".strip() or str(self.kind)

    @property
    def transient(self) -> bool:
        """Whether the service (or the way to it) is what failed, not the request: no
        answer, refused credentials, a missing bucket, throttling or a 5xx. Such a
        failure is worth retrying once an operator (or time) fixed it."""
        if self.kind in (Failure.UNREACHABLE, Failure.DENIED, Failure.NO_BUCKET):
            return True
        return self.kind is Failure.REFUSED and (
            self.status >= 500 or self.status in (408, 429) or self.code in _RETRY_CODES
        )


def failure_of(exc: BaseException) -> AwsFailure | None:
    """The :class:`AwsFailure` of a botocore exception, or ``None`` for anything else."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return AwsFailure(
            FAILURES.get(code, Failure.REFUSED),
            code,
            str(error.get("Message", "")),
            status if isinstance(status, int) else 0,
        )
    if isinstance(exc, BotoCoreError):
        return AwsFailure(Failure.UNREACHABLE, type(exc).__name__, str(exc))
    return None


@contextmanager
def translated(make: Callable[[AwsFailure], Exception]) -> Iterator[None]:
    """Turn a botocore error raised in the block into ``make(failure)`` (chained)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        failure = failure_of(exc)
        assert failure is not None
        raise make(failure) from exc


#: The signature version of S3 requests whose payload hash the caller already knows
#: (:func:`_known_payload_signer`); every other request is signed as ``s3v4`` signs it.
KNOWN_PAYLOAD_SIGNER = "callvault-s3v4"
_CHECKSUM_SHA256 = "x-amz-checksum-sha256"


def _known_payload_signer() -> type:
    """SigV4 for S3 that takes the payload hash from the request's own
    ``x-amz-checksum-sha256`` (``ChecksumSHA256``: the sha256 the caller computed of
    exactly this body, e.g. while sealing it) instead of hashing the body a second time.
    The payload stays signed (the server checks the body against the signed hash, and
    the checksum header as well); only who computes the digest changes. Requests without
    that header, streamed ones and unsigned-payload ones are signed as ``s3v4`` does."""
    import base64
    import binascii

    from botocore.auth import S3SigV4Auth

    class KnownPayloadS3SigV4Auth(S3SigV4Auth):  # type: ignore[misc]  # botocore is untyped
        def payload(self, request: Any) -> Any:
            known = request.headers.get(_CHECKSUM_SHA256)
            # botocore's own (private) tests of "is this payload signed, not streamed":
            # a botocore without them gets plain s3v4 behaviour (it hashes the body)
            streaming = getattr(self, "_is_streaming_checksum_payload", None)
            signed = getattr(self, "_should_sha256_sign_payload", None)
            if (
                known
                and streaming is not None
                and signed is not None
                and not streaming(request)
                and signed(request)
            ):
                try:
                    digest = base64.b64decode(known, validate=True)
                except (binascii.Error, ValueError):
                    digest = b""
                if len(digest) == 32:
                    return digest.hex()
            return super().payload(request)

    return KnownPayloadS3SigV4Auth


def _choose_known_payload_signer(context: Any, signing_name: str, **kwargs: Any) -> str | None:
    """``choose-signer`` hook of PutObject / UploadPart: where botocore would sign with
    plain ``s3v4`` (its own operation-specific choice, asked here), sign with
    :data:`KNOWN_PAYLOAD_SIGNER`; anything else (unsigned, presigning, v4a) is left to
    botocore's handlers (None)."""
    from botocore.handlers import set_operation_specific_signer

    chosen = set_operation_specific_signer(context=context, signing_name=signing_name, **kwargs)
    return KNOWN_PAYLOAD_SIGNER if chosen == "s3v4" else None


def _use_known_payload_signer(client: Any) -> None:
    import botocore.auth

    botocore.auth.AUTH_TYPE_MAPS.setdefault(KNOWN_PAYLOAD_SIGNER, _known_payload_signer())
    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register(f"choose-signer.s3.{operation}", _choose_known_payload_signer)


def make_client(
    service: str,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    error: type[StorageError] = StorageError,
    parse_timestamps: bool = True,
) -> Any:
    """A boto3 client for ``service`` with explicit retries, timeouts and pool size.

    ``parse_timestamps=False`` leaves the timestamps of answers as the service's ISO 8601
    text (read them with :func:`timestamp`): botocore's date parsing is most of the
    cost of parsing a listing of versions.

    Raises:
        StorageError: (``error``) boto3 could not build the client (bad endpoint, region).
    """
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    options: dict[str, Any] = {
        "region_name": region,
        # total_max_attempts counts the first try (botocore reads max_attempts as retries)
        "retries": {"total_max_attempts": max_attempts, "mode": "standard"},
        "max_pool_connections": POOL_CONNECTIONS,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
    }
    if endpoint_url and service == "s3":
        options["s3"] = {"addressing_style": "path"}
    core = botocore.session.get_session()
    if not parse_timestamps:
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    try:
        made = boto3.session.Session(botocore_session=core).client(
            service, endpoint_url=endpoint_url or None, config=Config(**options)
        )
    except (BotoCoreError, ValueError) as exc:
        raise error(
            f"cannot create a {service.upper()} client for {endpoint_url or 'AWS'}: {exc}"
        ) from exc
    if service == "s3":
        _use_known_payload_signer(made)
    return made


def timestamp(value: Any) -> datetime:
    """An answer's timestamp as an aware datetime, whether botocore parsed it or not.

    Raises:
        StorageError: neither a datetime nor ISO 8601 text.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise StorageError(f"S3 answered an unreadable time {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def list_versions(client: Any, bucket: str, key: str) -> list[dict[str, str]]:
    """Every version and delete marker of exactly ``key``, as DeleteObjects entries.

    Raises:
        botocore errors: the caller translates them (inside :func:`translated`).
    """
    entries: list[dict[str, str]] = []
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if item["Key"] == key:
                entries.append({"Key": key, "VersionId": item["VersionId"]})
    return entries


def versions_of(
    client: Any, bucket: str, keys: Sequence[str], *, prefix: str = ""
) -> dict[str, list[dict[str, Any]]]:
    """Every version and delete marker of each of ``keys`` (sorted, distinct, all
    starting with ``prefix``), by key: ``{"Key", "VersionId", "IsDeleteMarker",
    "LastModified", "Size"}`` dicts (versions newest first, as S3 lists them, then
    delete markers). Keys without any version are absent.

    One ``ListObjectVersions`` walk over ``prefix`` that starts just before the first
    key and, whenever the next wanted key lies ahead of the page, jumps to it with
    ``KeyMarker``. A first page of :data:`_PROBE_KEYS` entries measures how many
    entries lie between wanted keys: close together (a sweep that ends most objects
    of a prefix) the walk reads pages just long enough to reach the last wanted key
    (at most 1000 entries), one request per 1000 versions; far apart it reads small
    pages, one request per wanted key, the least a listing can do when the keys have
    thousands of strangers between them.

    Raises:
        botocore errors: the caller translates them (inside :func:`translated`).
        StorageError: the server's pages do not advance (a truncated page without
            its next marker).
    """
    wanted = set(keys)
    found: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    pending = list(keys)
    index = 0
    key_marker, version_marker = pending[0][:-1] if pending else "", ""
    page_size = _PROBE_KEYS
    while index < len(pending):
        request: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": prefix,
            "KeyMarker": key_marker,
            "MaxKeys": page_size,
        }
        if version_marker:
            request["VersionIdMarker"] = version_marker
        page = client.list_object_versions(**request)
        listed = 0
        resolved_before = index
        for kind, items in (("v", page.get("Versions", [])), ("m", page.get("DeleteMarkers", []))):
            for item in items:
                listed += 1
                key = item["Key"]
                if key not in wanted or (key, item["VersionId"]) in seen:
                    continue
                seen.add((key, item["VersionId"]))
                found.setdefault(key, []).append(
                    {
                        "Key": key,
                        "VersionId": item["VersionId"],
                        "IsDeleteMarker": kind == "m",
                        "LastModified": item.get("LastModified"),
                        "Size": int(item.get("Size", 0) or 0),
                    }
                )
        if not page.get("IsTruncated"):
            break
        next_key = str(page.get("NextKeyMarker", ""))
        next_version = str(page.get("NextVersionIdMarker", "") or "")
        while index < len(pending) and pending[index] < next_key:
            index += 1
        if index >= len(pending):
            break
        covered = index - resolved_before  # wanted keys this page listed completely
        if covered >= 2 and listed <= covered * _DENSE_GAP:
            # close together: enough entries to reach the last wanted key, no further
            gap = listed / covered
            page_size = max(_SKIP_PAGE, min(1000, int((len(pending) - index) * gap * 1.25) + 2))
        else:
            page_size = _SKIP_PAGE
        markers = (key_marker, version_marker)
        if pending[index] == next_key:  # the page ended inside a wanted key's versions
            key_marker, version_marker = next_key, next_version
        else:  # jump over the strangers to the next wanted key
            key_marker, version_marker = max(next_key, pending[index][:-1]), ""
        if (key_marker, version_marker) == markers:
            raise StorageError(f"S3 listing of {bucket}/{prefix} made no progress at {next_key!r}")
    return found


def delete_versions(client: Any, bucket: str, entries: Sequence[dict[str, str]]) -> dict[str, str]:
    """Delete ``entries`` in batches; return ``{key: error}`` for those S3 refused.

    Raises:
        botocore errors: the caller translates them (inside :func:`translated`).
    """
    errors: dict[str, str] = {}
    for start in range(0, len(entries), DELETE_BATCH_SIZE):
        batch = list(entries[start : start + DELETE_BATCH_SIZE])
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        for item in response.get("Errors", []):
            errors[item["Key"]] = f"{item.get('Code', '')} {item.get('Message', '')}".strip()
    return errors
