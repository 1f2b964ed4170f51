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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
    "delete_versions",
]

DELETE_BATCH_SIZE = 1000  # S3's limit per DeleteObjects request


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


def make_client(
    service: str,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    max_attempts: int = 5,
    connect_timeout: float = 10,
    read_timeout: float = 60,
    error: type[StorageError] = StorageError,
) -> Any:
    """A boto3 client for ``service`` with explicit retries, timeouts and pool size.

    Raises:
        StorageError: (``error``) boto3 could not build the client (bad endpoint, region).
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    options: dict[str, Any] = {
        "region_name": region,
        "retries": {"max_attempts": max_attempts, "mode": "standard"},
        "max_pool_connections": 32,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
    }
    if endpoint_url and service == "s3":
        options["s3"] = {"addressing_style": "path"}
    try:
        return boto3.session.Session().client(
            service, endpoint_url=endpoint_url or None, config=Config(**options)
        )
    except (BotoCoreError, ValueError) as exc:
        raise error(
            f"cannot create a {service.upper()} client for {endpoint_url or 'AWS'}: {exc}"
        ) from exc


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
