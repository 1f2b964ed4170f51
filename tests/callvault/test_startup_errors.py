"""Start-up errors: ``callvault up`` and ``callvault worker`` exit non-zero with one clear
line (found on main: exit 0 with a traceback, which systemd and Kubernetes read as a
clean stop), before anything is started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callvault.broker import free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def _run(
    command: str, tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    full.update(
        CALLVAULT_DATA_DIR=str(tmp_path / "data"),
        CALLVAULT_EMBEDDED_BROKER_PORT=str(free_port()),
        CALLVAULT_WEB_PORT=str(free_port()),
    )
    full.update(env)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "callvault.cli", command],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - started


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("command", ["up", "worker"])
def test_an_invalid_web_port_exits_2_with_one_line(command: str, tmp_path: Path) -> None:
    result, _ = _run(command, tmp_path, CALLVAULT_WEB_PORT="99999")
    assert result.returncode == 2
    assert "CALLVAULT_WEB_PORT" in _one_line(result) and "1-65535" in result.stderr


@pytest.mark.parametrize("command", ["up", "worker"])
def test_a_busy_web_port_exits_2_at_once_with_one_line(
    command: str, tmp_path: Path, busy_port: int
) -> None:
    result, took = _run(command, tmp_path, CALLVAULT_WEB_PORT=str(busy_port))
    assert result.returncode == 2
    line = _one_line(result)
    assert f"127.0.0.1:{busy_port} is already in use" in line
    assert took < 30  # found on main: 9.6 s, then exit 0
    assert not (tmp_path / "data" / "broker.log").exists()  # the broker was never started


@pytest.mark.parametrize("command", ["up", "worker"])
def test_an_unknown_log_level_exits_2_with_one_line(command: str, tmp_path: Path) -> None:
    result, _ = _run(command, tmp_path, CALLVAULT_LOG_LEVEL="verbose")
    assert result.returncode == 2
    assert "CALLVAULT_LOG_LEVEL" in _one_line(result)


def test_an_unresolvable_web_host_exits_2_with_one_line(tmp_path: Path) -> None:
    result, _ = _run("worker", tmp_path, CALLVAULT_WEB_HOST="no-such-host.invalid")
    assert result.returncode == 2
    assert "no-such-host.invalid" in _one_line(result)
