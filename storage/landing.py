"""The landing area: where telephony drops raw audio before ingest.

A :class:`Landing` knows a few roots (``file:///abs/dir``, ``s3://bucket/prefix/``)
and reads, writes and deletes audio only inside them. What a caller may rely on:

- :meth:`Landing.resolve` accepts a ``file://`` or ``s3://`` URI only if it lies
  inside a root, after percent-decoding once and resolving symlinks; a rejected URI
  raises :class:`LandingRejected` with a machine-readable ``reason``:

  ========================= ==================================================
  ``uri-invalid``           not a string, NUL/control characters, unknown scheme,
                            host in a file URI, query/fragment, double encoding,
                            empty path segment, a sidecar or the root itself
  ``uri-outside-landing``   ``.``/``..`` segments (also ``%2e%2e``), a symlink or
                            path leading out of every root, another bucket, or a
                            key beside the prefix (``s3://b/prefixEVIL``)
  ``landing-missing``       the audio is gone (read)
  ``landing-too-large``     more than ``max_bytes`` (checked before reading)
  ``landing-not-regular``   a FIFO, socket, device or directory (refused before
                            ``open``, so a read never blocks)
  ``landing-unsafe``        more than one hard link, or replaced while opened
  ``landing-unreadable``    this file cannot be read (permissions, ENXIO, a non-
                            transient S3 refusal)
  ========================= ==================================================

  A failure of the store itself (I/O error, S3 down or throttling, a missing landing
  bucket or root folder) raises :class:`LandingStoreUnavailable`: worth retrying, not
  dead-lettering.
- A URI is returned in canonical form: ``file://`` URIs name the real path
  (percent-encoded like :meth:`pathlib.Path.as_uri`), ``s3://`` URIs are not encoded.
- :meth:`Landing.land` writes atomically (temp file + rename, or one PutObject) into
  the FIRST root, overwriting a file of the same name (retries are idempotent).
- Next to ``<audio>`` a sidecar ``<audio>.event.json`` may hold the
  ``RecordingCompleted`` event, so a reconciler can re-announce audio whose event the
  broker lost (:meth:`Landing.iter_stale` lists audio, never ``.tmp-*``, and on request
  the sidecars whose audio is gone, so that a janitor can remove them).
- Deleting is idempotent; on S3 it removes every version of the object.
- Files are written ``0600`` in folders ``0700``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from callvault.errors import ConfigError
from storage import _aws
from storage._aws import AwsFailure, Failure
from storage._files import write_file_atomically
from storage.errors import LandingError, LandingRejected, LandingStoreUnavailable

__all__ = [
    "Landing",
    "LandingObject",
    "LandingRef",
    "LandingRejected",
    "LandingStream",
    "StaleLanding",
    "REASONS",
    "SIDECAR_SUFFIX",
]

REASONS = frozenset(
    {
        "uri-invalid",
        "uri-outside-landing",
        "landing-missing",
        "landing-too-large",
        "landing-not-regular",
        "landing-unsafe",
        "landing-unreadable",
    }
)
#: errno values that are about one file, not about the landing store: refused for good.
_FILE_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ELOOP,
        errno.ENXIO,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENAMETOOLONG,
        errno.EINVAL,
        errno.ENODEV,
        errno.EOPNOTSUPP,
    }
)
SIDECAR_SUFFIX = ".event.json"
MAX_SIDECAR_BYTES = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class LandingRef:
    """A URI checked to lie inside a landing root (made by :meth:`Landing.resolve`)."""

    uri: str  # canonical form
    root: str  # the root URI it lies in
    path: Path | None = None  # real path, for file:// roots
    bucket: str | None = None  # for s3:// roots
    key: str | None = None

    @property
    def scheme(self) -> str:
        return "file" if self.path is not None else "s3"


class LandingStream:
    """Landing audio being read (:meth:`Landing.open`): ``size`` bytes, ``read(n)``."""

    def __init__(
        self,
        uri: str,
        size: int,
        limit: int,
        read: Callable[[int], bytes],
        translate: Callable[[str, OSError], LandingError] | None,
    ) -> None:
        self.uri, self.size, self._limit = uri, size, limit
        self._read, self._translate = read, translate
        self.position = 0

    def read(self, size: int = -1, /) -> bytes:
        want = 1 << 20 if size is None or size < 0 else size
        try:
            piece = self._read(want)
        except OSError as exc:
            if self._translate is None:
                raise
            raise self._translate(f"cannot read landing file {self.uri}", exc) from exc
        self.position += len(piece)
        if self.position > self._limit:  # grew while it was read
            raise _reject("landing-too-large", f"{self.uri} has more than {self._limit} bytes")
        return piece


@dataclass(frozen=True)
class LandingObject:
    """What :meth:`Landing.describe` knows of landing audio without reading it.

    ``metadata`` is an S3 object's user metadata (lower-case keys without the
    ``x-amz-meta-`` prefix) and ``tags`` its tag set; both are empty for files.
    """

    uri: str
    size: int
    modified: float  # Unix time: mtime, or LastModified
    etag: str | None = None
    version_id: str | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StaleLanding:
    """Landing audio older than asked, and whether its event sidecar is there.

    With ``orphan_sidecars=True``, :meth:`Landing.iter_stale` also yields sidecars
    whose audio is gone: ``uri`` is then the (missing) audio's URI and ``has_audio``
    is False; the age is the sidecar's."""

    uri: str
    age_seconds: float
    has_sidecar: bool
    has_audio: bool = True


@dataclass(frozen=True)
class _FileRoot:
    uri: str
    path: Path  # real path


@dataclass(frozen=True)
class _S3Root:
    uri: str
    bucket: str
    prefix: str  # "" or ending with "/"


def _reject(reason: str, message: str) -> LandingRejected:
    return LandingRejected(reason, message)


class Landing:
    """Read, write and delete landing audio inside ``roots`` (see the module docstring).

    ``s3_client_factory`` makes the boto3 S3 client used for ``s3://`` roots (called
    once, lazily); by default :func:`storage._aws.make_client` with boto3's usual
    credential chain. ``allow_hard_links`` accepts files with several links (an
    archive an operator imports, where backups share identical files; never a drop
    zone other parties write to).

    Raises:
        ConfigError: no roots, a malformed root, or ``max_bytes`` not a positive int.
    """

    def __init__(
        self,
        roots: Sequence[str],
        *,
        s3_client_factory: Callable[[], Any] | None = None,
        max_bytes: int,
        allow_hard_links: bool = False,
    ) -> None:
        if isinstance(roots, str) or not roots:
            raise ConfigError("landing roots must be a non-empty sequence of file:// / s3:// URIs")
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
            raise ConfigError(f"landing max_bytes must be a positive int, not {max_bytes!r}")
        self._roots: list[_FileRoot | _S3Root] = [_parse_root(root) for root in roots]
        self.max_bytes = max_bytes
        self.allow_hard_links = allow_hard_links
        self._s3_client_factory = s3_client_factory
        self._s3_client: Any = None
        #: Entries of the folder roots the last :meth:`iter_stale` passed over because
        #: nothing can ingest them as they are: a FIFO, socket, device or symlink, or a
        #: name with control characters or bytes that are not UTF-8. They stay outside
        #: governance until an operator moves or renames them (the reconciler counts them).
        self.unusable_entries = 0

    @property
    def roots(self) -> list[str]:
        """The roots in canonical form, first (where :meth:`land` writes) first."""
        return [root.uri for root in self._roots]

    # -- resolving -------------------------------------------------------------------

    def resolve(self, uri: str) -> LandingRef:
        """Check that ``uri`` names audio inside a landing root; return its canonical ref.

        Does not check that the audio exists (:meth:`read` does).

        Raises:
            LandingRejected: ``uri-invalid`` or ``uri-outside-landing`` (module docstring).
        """
        if not isinstance(uri, str) or not uri:
            raise _reject("uri-invalid", "landing URI must be a non-empty str")
        if len(uri) > 4096:
            raise _reject("uri-invalid", "landing URI is longer than 4096 characters")
        if _CONTROL.search(uri):
            raise _reject("uri-invalid", "landing URI contains NUL, control or '\\' characters")
        try:
            parts = urlsplit(uri)
        except ValueError as exc:
            raise _reject("uri-invalid", f"malformed landing URI: {exc}") from None
        if parts.scheme not in ("file", "s3"):
            raise _reject("uri-invalid", f"landing URI scheme {parts.scheme!r} is not file or s3")
        if parts.query or parts.fragment or "?" in uri or "#" in uri:
            raise _reject("uri-invalid", "landing URI must not have a query or fragment")
        path = unquote(parts.path)
        if "%" in path:
            raise _reject("uri-invalid", "landing URI is percent-encoded twice (or names a '%')")
        if _CONTROL.search(path):
            raise _reject("uri-invalid", "landing URI encodes NUL, control or '\\' characters")
        segments = path.split("/")[1:]
        if any(segment in (".", "..") for segment in segments):
            raise _reject("uri-outside-landing", "landing URI has '.' or '..' segments")
        if path.endswith(SIDECAR_SUFFIX):
            raise _reject("uri-invalid", "landing URI names an event sidecar, not audio")
        if parts.scheme == "file":
            return self._resolve_file(parts.netloc, path)
        return self._resolve_s3(parts.netloc, path)

    def _resolve_file(self, host: str, path: str) -> LandingRef:
        if host not in ("", "localhost"):
            raise _reject("uri-invalid", "file URIs take no host (file:///abs/path)")
        if not path.startswith("/"):
            raise _reject("uri-invalid", "file URI path must be absolute")
        real = Path(os.path.realpath(os.path.normpath(path)))
        for root in self._roots:
            if isinstance(root, _FileRoot) and real.is_relative_to(root.path):
                if real == root.path:
                    raise _reject("uri-invalid", "landing URI names the landing root itself")
                return LandingRef(uri=real.as_uri(), root=root.uri, path=real)
        raise _reject("uri-outside-landing", "file URI does not lie inside a landing root")

    def _resolve_s3(self, bucket: str, path: str) -> LandingRef:
        key = path[1:]
        if not bucket:
            raise _reject("uri-invalid", "s3 URI needs a bucket (s3://bucket/key)")
        if not key or "//" in path or key.endswith("/"):
            raise _reject("uri-invalid", "s3 URI needs a key without empty segments")
        for root in self._roots:
            if isinstance(root, _S3Root) and bucket == root.bucket and key.startswith(root.prefix):
                if len(key.encode("utf-8")) > 1024:
                    raise _reject("uri-invalid", "s3 key is longer than 1024 bytes")
                return LandingRef(uri=f"s3://{bucket}/{key}", root=root.uri, bucket=bucket, key=key)
        raise _reject("uri-outside-landing", "s3 URI does not lie inside a landing root")

    def _ref(self, ref_or_uri: LandingRef | str) -> LandingRef:
        # A ref is re-resolved: it may be hand-made, or a symlink may have appeared since.
        return self.resolve(ref_or_uri.uri if isinstance(ref_or_uri, LandingRef) else ref_or_uri)

    def _for_reading(self, ref_or_uri: LandingRef | str) -> LandingRef:
        # A file ref is not resolved again before a read: _read_file re-checks its real
        # path against the roots itself (and opens it O_NOFOLLOW, same inode), which is
        # what resolving would check; every realpath is a walk of lstat calls.
        if (
            isinstance(ref_or_uri, LandingRef)
            and ref_or_uri.path is not None
            and not ref_or_uri.path.name.endswith(SIDECAR_SUFFIX)
        ):
            return ref_or_uri
        return self._ref(ref_or_uri)

    # -- audio -----------------------------------------------------------------------

    def read(self, ref: LandingRef | str) -> bytes:
        """Return the landing audio (at most ``max_bytes``).

        Raises:
            LandingRejected: ``landing-missing``, ``landing-too-large`` (size checked before
                reading), ``landing-not-regular``, ``landing-unsafe``,
                ``landing-unreadable``, ``uri-outside-landing`` (a symlink was swapped
                in), ``uri-invalid``.
            LandingStoreUnavailable: the landing folder or bucket failed (worth retrying).
            LandingError: any other S3 refusal of this object.
        """
        ref = self._for_reading(ref)
        if ref.path is not None:
            return self._read_file(ref, self.max_bytes, too_large="landing-too-large")
        return self._read_s3(ref, self.max_bytes, too_large="landing-too-large")

    @contextlib.contextmanager
    def open(self, ref: LandingRef | str) -> Iterator[LandingStream]:
        """The landing audio as a stream (``size``, ``read(n)``), for reading it chunk by
        chunk in constant memory; the same checks as :meth:`read`. Reading past
        ``size`` (a file growing meanwhile) or past ``max_bytes`` raises
        ``landing-too-large``.

        Raises:
            LandingRejected, LandingStoreUnavailable, LandingError: as :meth:`read`, on
                opening or on any read.
        """
        ref = self._for_reading(ref)
        if ref.path is not None:
            handle, size = self._open_file(ref, self.max_bytes, too_large="landing-too-large")
            with handle:
                yield LandingStream(ref.uri, size, self.max_bytes, handle.read, _os_error)
            return

        def fetch() -> tuple[Any, int]:
            response = self._client().get_object(Bucket=ref.bucket, Key=ref.key)
            length = int(response.get("ContentLength", 0))
            if length > self.max_bytes:
                response["Body"].close()
                raise _reject(
                    "landing-too-large", f"{ref.uri} has {length} bytes; limit {self.max_bytes}"
                )
            return response["Body"], length

        body, size = self._s3_guard("read", ref.uri, fetch)

        def read(n: int) -> bytes:
            return bytes(self._s3_guard("read", ref.uri, lambda: body.read(n)))

        try:
            yield LandingStream(ref.uri, size, self.max_bytes, read, None)
        finally:
            body.close()

    def delete(self, ref: LandingRef | str) -> None:
        """Delete the landing audio (every version on S3); already gone is fine.

        Raises:
            LandingRejected: the URI is invalid or outside the roots.
            LandingError: the audio could not be deleted.
        """
        ref = self._ref(ref)
        if ref.path is not None:
            self._unlink(ref.path)
        else:
            self._s3_delete(ref)

    def discard(self, ref: LandingRef | str, *legs: LandingRef | str) -> None:
        """:meth:`delete` the audio, then :meth:`delete_sidecar` its sidecar, resolving
        the URI once (what ingest does with a stored recording's landing copy). A
        recording's other ``legs`` are deleted first, so the sidecar goes last.

        Raises:
            LandingRejected: the URI is invalid or outside the roots.
            LandingError: the audio or its sidecar could not be deleted.
        """
        for leg in legs:
            self.delete(leg)
        resolved = self._ref(ref)
        if resolved.path is not None:
            self._unlink(resolved.path)
            self._unlink(_sidecar_path(resolved.path))
        else:
            self._s3_delete(resolved)
            self._s3_delete(_sidecar_ref(resolved))

    def land(self, name: str, data: bytes) -> str:
        """Write ``data`` as ``name`` into the first root, atomically; return its URI.

        Raises:
            LandingRejected: ``uri-invalid`` (``name`` is not ``[A-Za-z0-9][A-Za-z0-9._-]*``
                of at most 200 characters, or ends with the sidecar suffix),
                ``landing-too-large``.
            LandingError: the write failed.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(SIDECAR_SUFFIX):
            raise _reject(
                "uri-invalid",
                f"landing name {name!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,199}}",
            )
        if not isinstance(data, bytes | bytearray | memoryview):
            raise LandingError(f"landing data must be bytes, not {type(data).__name__}")
        if len(data) > self.max_bytes:
            raise _reject(
                "landing-too-large", f"{len(data)} bytes exceed the limit of {self.max_bytes}"
            )
        root = self._roots[0]
        if isinstance(root, _FileRoot):
            path = root.path / name
            self._write_file(path, bytes(data))
            return path.as_uri()
        key = root.prefix + name
        self._s3_call("put", key, "put_object", Bucket=root.bucket, Key=key, Body=bytes(data))
        return f"s3://{root.bucket}/{key}"

    # -- event sidecars ----------------------------------------------------------------

    def write_sidecar(self, ref_or_uri: LandingRef | str, event: Mapping[str, Any]) -> str:
        """Store ``event`` as JSON in ``<audio>.event.json``, atomically; return its URI.

        Raises:
            LandingRejected: the audio URI is invalid or outside the roots.
            LandingError: ``event`` is not JSON-serialisable, or the write failed.
        """
        ref = self._ref(ref_or_uri)
        try:
            payload = json.dumps(dict(event), sort_keys=True).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise LandingError(f"event for {ref.uri} is not JSON-serialisable: {exc}") from exc
        if ref.path is not None:
            path = _sidecar_path(ref.path)
            self._write_file(path, payload)
            return path.as_uri()
        key = f"{ref.key}{SIDECAR_SUFFIX}"
        self._s3_call(
            "put", key, "put_object",
            Bucket=ref.bucket, Key=key, Body=payload, ContentType="application/json",
        )  # fmt: skip
        return f"s3://{ref.bucket}/{key}"

    def read_sidecar(self, ref_or_uri: LandingRef | str) -> dict[str, Any] | None:
        """Return the event stored beside the audio, or ``None`` if there is none.

        Raises:
            LandingRejected: the audio URI is invalid or outside the roots.
            LandingError: the sidecar is not a JSON object, or could not be read.
        """
        ref = self._for_reading(ref_or_uri)
        sidecar = _sidecar_ref(ref)
        try:
            if sidecar.path is not None:
                raw = self._read_file(sidecar, MAX_SIDECAR_BYTES, too_large="landing-too-large")
            else:
                raw = self._read_s3(sidecar, MAX_SIDECAR_BYTES, too_large="landing-too-large")
        except LandingRejected as exc:
            if exc.reason == "landing-missing":
                return None
            if exc.reason == "uri-outside-landing":
                raise  # the audio's folder leads outside the roots now (as resolve says)
            raise LandingError(f"event sidecar {sidecar.uri} is unusable: {exc}") from exc
        try:
            event = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise LandingError(f"event sidecar {sidecar.uri} is not valid JSON") from exc
        if not isinstance(event, dict):
            raise LandingError(f"event sidecar {sidecar.uri} is not a JSON object")
        return event

    def delete_sidecar(self, ref_or_uri: LandingRef | str) -> None:
        """Delete the event sidecar of the audio; already gone is fine.

        Raises:
            LandingRejected: the audio URI is invalid or outside the roots.
            LandingError: the sidecar could not be deleted.
        """
        sidecar = _sidecar_ref(self._ref(ref_or_uri))
        if sidecar.path is not None:
            self._unlink(sidecar.path)
        else:
            self._s3_delete(sidecar)

    # -- reconciling -----------------------------------------------------------------

    def iter_stale(
        self, older_than_seconds: float, now: float | None = None, *, orphan_sidecars: bool = False
    ) -> Iterator[StaleLanding]:
        """Yield landing audio (not sidecars, not temp files) at least this old, all roots;
        with ``orphan_sidecars`` also event sidecars at least this old whose audio is
        gone (``has_audio=False``).

        ``now`` is a Unix timestamp (default: the current time); age is measured from
        the file's mtime or the object's LastModified.

        Raises:
            LandingError: a negative age, or a root could not be listed.
        """
        if not isinstance(older_than_seconds, int | float) or older_than_seconds < 0:
            raise LandingError(f"older_than_seconds must be >= 0, not {older_than_seconds!r}")
        current = time.time() if now is None else float(now)
        self.unusable_entries = 0
        for root in self._roots:
            listing = self._list_file(root) if isinstance(root, _FileRoot) else self._list_s3(root)
            for uri, modified, has_sidecar, has_audio in listing:
                age = current - modified
                if age >= older_than_seconds and (has_audio or orphan_sidecars):
                    yield StaleLanding(uri, age, has_sidecar, has_audio)

    def _list_file(self, root: _FileRoot) -> Iterator[tuple[str, float, bool, bool]]:
        def fail(exc: OSError) -> None:
            raise LandingStoreUnavailable(f"cannot list landing folder {root.uri}: {exc}") from exc

        if not root.path.is_dir():
            return
        for folder, dirnames, filenames in os.walk(root.path, onerror=fail):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            names = set(filenames)
            for name in sorted(names):
                if name.startswith("."):
                    continue
                orphan = name.endswith(SIDECAR_SUFFIX)
                if orphan:
                    name = name.removesuffix(SIDECAR_SUFFIX)
                    if name in names or not name or name.startswith("."):
                        continue  # listed with its audio
                    path = Path(folder, name + SIDECAR_SUFFIX)
                    try:
                        info = os.lstat(path)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise LandingStoreUnavailable(
                            f"cannot stat landing sidecar {path}: {exc}"
                        ) from exc
                    audio_uri = Path(folder, name).as_uri()
                    if stat.S_ISREG(info.st_mode) and self._resolvable(audio_uri):
                        yield audio_uri, info.st_mtime, True, False
                    else:
                        self.unusable_entries += 1
                    continue
                path = Path(folder, name)
                try:
                    info = os.lstat(path)
                except FileNotFoundError:
                    continue  # deleted while listing
                except OSError as exc:
                    raise LandingStoreUnavailable(
                        f"cannot stat landing file {path}: {exc}"
                    ) from exc
                if not stat.S_ISREG(info.st_mode) or not self._resolvable(path.as_uri()):
                    self.unusable_entries += 1
                    continue
                yield path.as_uri(), info.st_mtime, name + SIDECAR_SUFFIX in names, True

    def _list_s3(self, root: _S3Root) -> Iterator[tuple[str, float, bool, bool]]:
        items: dict[str, float] = {}

        def collect() -> None:
            paginator = self._client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=root.bucket, Prefix=root.prefix):
                for item in page.get("Contents", []):
                    items[item["Key"]] = item["LastModified"].timestamp()

        self._s3_guard("list", root.uri, collect)
        for key in sorted(items):
            if key.endswith(SIDECAR_SUFFIX):
                audio = key.removesuffix(SIDECAR_SUFFIX)
                uri = f"s3://{root.bucket}/{audio}"
                if audio not in items and audio and self._resolvable(uri):
                    yield uri, items[key], True, False
                continue
            uri = f"s3://{root.bucket}/{key}"
            if not self._resolvable(uri):
                continue
            yield uri, items[key], key + SIDECAR_SUFFIX in items, True

    def _resolvable(self, uri: str) -> bool:
        """Whether ``uri`` resolves to itself (so the reconciler can use it as is)."""
        try:
            return self.resolve(uri).uri == uri
        except LandingRejected:
            return False

    # -- telephony sources -------------------------------------------------------------

    def describe(self, ref_or_uri: LandingRef | str) -> LandingObject:
        """Size, times, and for S3 the ETag, version, user metadata and tags of landing
        audio, without reading it.

        Raises:
            LandingRejected: ``landing-missing`` (gone), ``uri-invalid``, ``uri-outside-landing``.
            LandingError: any other failure (worth retrying).
        """
        ref = self._ref(ref_or_uri)
        if ref.path is not None:
            try:
                info = os.stat(ref.path, follow_symlinks=False)
            except FileNotFoundError:
                raise _reject(
                    "landing-missing", f"landing audio {ref.uri} does not exist"
                ) from None
            except OSError as exc:
                raise LandingError(f"cannot stat landing file {ref.uri}: {exc}") from exc
            if not stat.S_ISREG(info.st_mode):
                raise _reject("uri-invalid", f"{ref.uri} is not a regular file")
            return LandingObject(uri=ref.uri, size=info.st_size, modified=info.st_mtime)

        def head() -> LandingObject:
            client = self._client()
            response = client.head_object(Bucket=ref.bucket, Key=ref.key)
            tagging = client.get_object_tagging(Bucket=ref.bucket, Key=ref.key)
            return LandingObject(
                uri=ref.uri,
                size=int(response.get("ContentLength", 0)),
                modified=response["LastModified"].timestamp(),
                etag=str(response.get("ETag", "")).strip('"') or None,
                version_id=response.get("VersionId"),
                content_type=response.get("ContentType"),
                metadata={str(k).lower(): str(v) for k, v in response.get("Metadata", {}).items()},
                tags={str(t["Key"]): str(t["Value"]) for t in tagging.get("TagSet", [])},
            )

        described: LandingObject = self._s3_guard("describe", ref.uri, head)
        return described

    def digest(self, ref_or_uri: LandingRef | str, *, chunk: int = 1 << 20) -> tuple[str, int]:
        """The sha256 (hex) and size of landing audio, read ``chunk`` bytes at a time.

        Raises:
            LandingRejected: ``landing-missing``, ``landing-too-large``, ``uri-invalid``,
                ``uri-outside-landing``.
            LandingError: any other failure (worth retrying).
        """
        ref = self._ref(ref_or_uri)
        hasher = hashlib.sha256()
        size = 0

        def take(piece: bytes) -> None:
            nonlocal size
            size += len(piece)
            if size > self.max_bytes:
                raise _reject(
                    "landing-too-large", f"{ref.uri} has more than {self.max_bytes} bytes"
                )
            hasher.update(piece)

        if ref.path is not None:
            try:
                fd = os.open(ref.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except FileNotFoundError:
                raise _reject(
                    "landing-missing", f"landing audio {ref.uri} does not exist"
                ) from None
            except OSError as exc:
                raise LandingError(f"cannot open landing file {ref.uri}: {exc}") from exc
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise _reject("uri-invalid", f"{ref.uri} is not a regular file")
                try:
                    while piece := handle.read(chunk):
                        take(piece)
                except OSError as exc:
                    raise LandingError(f"cannot read landing file {ref.uri}: {exc}") from exc
            return hasher.hexdigest(), size

        def fetch() -> None:
            body = self._client().get_object(Bucket=ref.bucket, Key=ref.key)["Body"]
            try:
                while piece := body.read(chunk):
                    take(bytes(piece))
            finally:
                body.close()

        self._s3_guard("read", ref.uri, fetch)
        return hasher.hexdigest(), size

    def adopt(self, source: Path, name: str) -> str:
        """Move the local file ``source`` into the first root as ``name``; return its URI.

        A rename where it can be, else a private copy made durable before ``source`` is
        removed. Re-running after a crash is safe: with ``source`` gone and ``name``
        present, the landed URI is returned as it is.

        Raises:
            LandingRejected: ``uri-invalid`` (a bad ``name``, or the first root is not a
                ``file://`` root), ``landing-missing`` (neither ``source`` nor ``name``
                exists), ``landing-too-large``.
            LandingError: the move failed.
        """
        root = self._roots[0]
        if not isinstance(root, _FileRoot):
            raise _reject("uri-invalid", "the first landing root must be a file:// root")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(SIDECAR_SUFFIX):
            raise _reject(
                "uri-invalid",
                f"landing name {name!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,199}}",
            )
        target = root.path / name
        try:
            info = os.stat(source)
        except FileNotFoundError:
            if target.is_file():
                return target.as_uri()  # moved by an earlier run
            raise _reject("landing-missing", f"{source} does not exist") from None
        except OSError as exc:
            raise LandingError(f"cannot stat {source}: {exc}") from exc
        if not stat.S_ISREG(info.st_mode):
            raise _reject("uri-invalid", f"{source} is not a regular file")
        if info.st_size > self.max_bytes:
            raise _reject(
                "landing-too-large", f"{source} has {info.st_size} bytes; limit {self.max_bytes}"
            )
        try:
            root.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                os.rename(source, target)
                os.chmod(target, 0o600)
            except OSError as exc:
                if exc.errno != 18:  # EXDEV: another file system, so copy
                    raise
                tmp = target.with_name(f".tmp-{os.getpid()}-{name}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
                os.unlink(source)
        except OSError as exc:
            raise LandingError(f"cannot move {source} into the landing area: {exc}") from exc
        return target.as_uri()

    # -- file helpers ----------------------------------------------------------------

    def _read_file(self, ref: LandingRef, limit: int, *, too_large: str) -> bytes:
        """Read a landing file whole (see :meth:`_open_file`)."""
        handle, size = self._open_file(ref, limit, too_large=too_large)
        with handle:
            try:
                # Sized to the file (not the limit: a read(limit + 1) faults in a buffer of
                # max_bytes per call); one byte more shows a file that grew since fstat.
                data = handle.read(size + 1)
                if len(data) > size:
                    data += handle.read(limit + 1 - len(data))
            except OSError as exc:
                raise _os_error(f"cannot read landing file {ref.uri}", exc) from exc
        if len(data) > limit:  # grew while we read
            raise _reject(too_large, f"{ref.uri} has more than {limit} bytes")
        return data

    def _open_file(
        self, ref: LandingRef, limit: int, *, too_large: str
    ) -> tuple[io.BufferedReader, int]:
        """Open a landing file without ever blocking or leaving the roots; return the
        handle and the file's size.

        Checked before the file is opened (``lstat``): it is a regular file (a FIFO
        would block ``open``, a socket fails it with ENXIO, a device could be read
        forever) with exactly one hard link (a hard link made in the landing root can
        lead to any file outside it, which ``realpath`` cannot see). It is then opened
        with ``O_NOFOLLOW | O_NONBLOCK``; ``fstat`` must show the same device and
        inode, so nothing swapped in between is read, and the open file's real path
        (the kernel's name for it, :func:`_opened_path`) must still lie in a root: a
        parent folder swapped for a symlink since ``resolve`` is caught.
        """
        assert ref.path is not None
        # lstat first: a missing file (most sidecars) needs no realpath walk to be missing.
        try:
            before = os.lstat(ref.path)
        except FileNotFoundError:
            lexical = self._root_of(ref.path)
            if lexical is not None and not lexical.path.is_dir():  # unmounted?
                raise LandingStoreUnavailable(f"landing root {lexical.uri} is missing") from None
            raise _reject("landing-missing", f"landing audio {ref.uri} does not exist") from None
        except OSError as exc:
            raise _os_error(f"cannot stat landing file {ref.uri}", exc) from exc
        _check_safe(ref.uri, before, self.allow_hard_links)
        if before.st_size > limit:
            raise _reject(too_large, f"{ref.uri} has {before.st_size} bytes; limit {limit}")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(ref.path, flags)
        except FileNotFoundError:
            raise _reject("landing-missing", f"landing audio {ref.uri} does not exist") from None
        except OSError as exc:
            raise _os_error(f"cannot open landing file {ref.uri}", exc) from exc
        handle = os.fdopen(fd, "rb")
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
                raise _reject("landing-unsafe", f"{ref.uri} was replaced while it was opened")
            _check_safe(ref.uri, info, self.allow_hard_links)
            # Re-check: a symlink may have been swapped in (in a parent) since resolve().
            if self._root_of(_opened_path(fd, ref)) is None:
                raise _reject(
                    "uri-outside-landing", f"{ref.uri} now leads outside the landing roots"
                )
            if info.st_size > limit:
                raise _reject(too_large, f"{ref.uri} has {info.st_size} bytes; limit {limit}")
        except BaseException:
            handle.close()
            raise
        return handle, info.st_size

    def _root_of(self, path: Path) -> _FileRoot | None:
        """The file root ``path`` lies in (compared as written: pass a real path)."""
        return next(
            (r for r in self._roots if isinstance(r, _FileRoot) and path.is_relative_to(r.path)),
            None,
        )

    def _write_file(self, path: Path, data: bytes) -> None:
        try:
            write_file_atomically(path, data)
        except OSError as exc:
            raise LandingStoreUnavailable(
                f"cannot write landing file {path.as_uri()}: {exc}"
            ) from exc

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise LandingStoreUnavailable(
                f"cannot delete landing file {path.as_uri()}: {exc}"
            ) from exc

    # -- s3 helpers ------------------------------------------------------------------

    def _client(self) -> Any:
        if self._s3_client is None:
            if self._s3_client_factory is not None:
                self._s3_client = self._s3_client_factory()
            else:
                from storage.vault.s3 import make_s3_client

                self._s3_client = make_s3_client()
        return self._s3_client

    def _s3_guard(self, action: str, where: str, call: Callable[[], Any]) -> Any:
        """Run ``call``; turn botocore errors into landing errors."""

        def landing_error(failure: AwsFailure) -> LandingError:
            if failure.kind is Failure.NOT_FOUND:
                return _reject("landing-missing", f"landing object {where} does not exist")
            if failure.kind is Failure.NO_BUCKET:
                return LandingStoreUnavailable(f"landing bucket of {where} does not exist")
            error = LandingStoreUnavailable if failure.transient else LandingError
            return error(f"S3 {action} of {where} failed: {failure.code or failure}")

        with _aws.translated(landing_error):
            return call()

    def _s3_call(self, action: str, key: str, method: str, **kwargs: Any) -> Any:
        where = f"s3://{kwargs.get('Bucket')}/{key}"
        return self._s3_guard(action, where, lambda: getattr(self._client(), method)(**kwargs))

    def _read_s3(self, ref: LandingRef, limit: int, *, too_large: str) -> bytes:
        def fetch() -> bytes:
            response = self._client().get_object(Bucket=ref.bucket, Key=ref.key)
            body = response["Body"]
            try:
                size = int(response.get("ContentLength", 0))
                if size > limit:
                    raise _reject(too_large, f"{ref.uri} has {size} bytes; limit {limit}")
                # Sized to the object when S3 says its length (http.client allocates the
                # whole amount asked for); one byte more shows a longer body.
                data = bytes(body.read((size if size > 0 else limit) + 1))
                if 0 < size < len(data):
                    data += bytes(body.read(limit + 1 - len(data)))
            finally:
                body.close()
            if len(data) > limit:
                raise _reject(too_large, f"{ref.uri} has more than {limit} bytes")
            return data

        result: bytes = self._s3_guard("read", ref.uri, fetch)
        return result

    def _s3_delete(self, ref: LandingRef) -> None:
        assert ref.bucket is not None and ref.key is not None
        bucket, key = ref.bucket, ref.key

        def remove() -> None:
            client = self._client()
            try:
                entries = _aws.list_versions(client, bucket, key)
            except Exception as exc:
                failure = _aws.failure_of(exc)
                if failure is None or failure.kind in (Failure.NO_BUCKET, Failure.UNREACHABLE):
                    raise
                # Not allowed to list versions: a plain delete is the best we can do.
                client.delete_object(Bucket=bucket, Key=key)
                return
            errors = _aws.delete_versions(client, bucket, entries)
            if errors:
                raise LandingStoreUnavailable(
                    f"could not delete {ref.uri}: {next(iter(errors.values()))}"
                )

        try:
            self._s3_guard("delete", ref.uri, remove)
        except LandingRejected as exc:
            if exc.reason != "landing-missing":
                raise


def _opened_path(fd: int, ref: LandingRef) -> Path:
    """The real path of the file open as ``fd``: the kernel's own name for it
    (``/proc/self/fd``, one ``readlink`` and no walk of ``lstat`` calls), or, without
    ``/proc``, ``realpath`` of the path it was opened by.

    Raises:
        LandingRejected: ``landing-missing`` (removed since it was opened).
    """
    assert ref.path is not None
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return Path(os.path.realpath(ref.path))
    if not name.startswith("/"):  # not a path (no /proc, or an anonymous file)
        return Path(os.path.realpath(ref.path))
    if name.endswith(" (deleted)") and os.fstat(fd).st_nlink == 0:
        raise _reject("landing-missing", f"landing audio {ref.uri} was removed while opened")
    return Path(name)


def _check_safe(uri: str, info: os.stat_result, allow_hard_links: bool = False) -> None:
    """Refuse what must not be read as landing audio (see ``Landing._read_file``)."""
    if stat.S_ISLNK(info.st_mode):
        raise _reject("uri-outside-landing", f"{uri} is a symbolic link")
    if stat.S_ISDIR(info.st_mode):
        raise _reject("uri-invalid", f"{uri} is a folder, not audio")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket or device"
        raise _reject("landing-not-regular", f"{uri} is {kind}, not a regular file")
    if info.st_nlink != 1 and not allow_hard_links:
        raise _reject(
            "landing-unsafe",
            f"{uri} has {info.st_nlink} hard links (a hard link may lead outside the landing root)",
        )


def _os_error(message: str, exc: OSError) -> LandingError:
    """A per-file refusal (permissions, a symlink met by O_NOFOLLOW, ENXIO) is for good;
    anything else (I/O errors, no file descriptors, a stale mount) is worth retrying."""
    if exc.errno == errno.ELOOP:
        return _reject("uri-outside-landing", f"{message}: it is a symbolic link")
    if exc.errno in _FILE_ERRNOS:
        return _reject("landing-unreadable", f"{message}: {exc.strerror}")
    return LandingStoreUnavailable(f"{message}: {exc}")


def _sidecar_path(audio: Path) -> Path:
    return audio.with_name(audio.name + SIDECAR_SUFFIX)


def _sidecar_ref(ref: LandingRef) -> LandingRef:
    if ref.path is not None:
        path = _sidecar_path(ref.path)
        return LandingRef(uri=path.as_uri(), root=ref.root, path=path)
    key = f"{ref.key}{SIDECAR_SUFFIX}"
    return LandingRef(uri=f"s3://{ref.bucket}/{key}", root=ref.root, bucket=ref.bucket, key=key)


def _parse_root(uri: str) -> _FileRoot | _S3Root:
    """Parse one landing root URI into its canonical form.

    Raises:
        ConfigError: the root is not ``file:///abs/dir`` or ``s3://bucket[/prefix/]``.
    """
    if not isinstance(uri, str) or _CONTROL.search(uri) or "%" in uri:
        raise ConfigError(f"landing root {uri!r} is not a plain file:// or s3:// URI")
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        raise ConfigError(f"landing root {uri!r} must not have a query or fragment")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ConfigError(f"landing root {uri!r} must not contain '.' or '..' segments")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"landing root {uri!r} must be file:///absolute/dir")
        real = Path(os.path.realpath(parts.path))
        return _FileRoot(uri=real.as_uri(), path=real)
    if parts.scheme == "s3":
        if not _BUCKET.fullmatch(parts.netloc):
            raise ConfigError(f"landing root {uri!r} names an invalid bucket {parts.netloc!r}")
        prefix = "/".join(segments) + "/" if segments else ""
        return _S3Root(uri=f"s3://{parts.netloc}/{prefix}", bucket=parts.netloc, prefix=prefix)
    raise ConfigError(f"landing root {uri!r} must be a file:// or s3:// URI")
