"""`callvault worker --processes N`'s supervisor (callvault/workers.py) with real forked
children: named per index, restarted when one dies, all stopped by SIGTERM to the
parent, a crash loop gives up with the children's status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SUPERVISOR = textwrap.dedent(
    """
    import os, socket, sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    import callvault.workers as workers
    from callvault.settings import load_settings

    workers.RESTART_PAUSE, workers.MAX_QUICK_FAILURES = 0.1, 3
    out, mode = Path(sys.argv[1]), sys.argv[2]
    settings = load_settings({{"CALLVAULT_DATA_DIR": str(out), "CALLVAULT_WORKER_ID": "w"}})

    def run_one(mine, sock):
        (out / f"{{mine.worker_id}}.{{os.getpid()}}").write_text(str(sock.fileno()))
        if mode == "crash":
            return 3
        while True:
            time.sleep(0.1)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sys.exit(workers.run_worker_processes(settings, 2, sock, run_one))
    """
)


def _supervise(tmp_path: Path, mode: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "supervise.py"
    script.write_text(SUPERVISOR.format(root=str(ROOT)))
    return subprocess.Popen([sys.executable, str(script), str(tmp_path), mode])


def _started(tmp_path: Path) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for path in sorted(tmp_path.glob("w-*.*"), key=lambda p: p.stat().st_mtime_ns):
        name, pid = path.name.rsplit(".", 1)
        seen.setdefault(name, []).append(int(pid))
    return seen


def _wait(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_children_are_named_restarted_and_stopped_with_the_parent(tmp_path: Path) -> None:
    parent = _supervise(tmp_path, "sleep")
    try:
        first = _wait(lambda: (s := _started(tmp_path)) and len(s) == 2 and s)
        assert set(first) == {"w-1", "w-2"}  # CALLVAULT_WORKER_ID-<index>
        os.kill(first["w-2"][0], signal.SIGKILL)  # one child dies: it is started again
        again = _wait(lambda: len(_started(tmp_path).get("w-2", [])) == 2 and _started(tmp_path))
        assert again["w-1"] == first["w-1"]  # the other one kept running
        children = [again["w-1"][0], again["w-2"][1]]
        assert all(_alive(pid) for pid in children)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(20) == 0  # a clean stop
        _wait(lambda: not any(_alive(pid) for pid in children))
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_child_that_keeps_failing_stops_the_group_with_its_status(tmp_path: Path) -> None:
    parent = _supervise(tmp_path, "crash")
    assert parent.wait(30) == 3
    starts = sum(len(pids) for pids in _started(tmp_path).values())
    assert starts >= 3  # restarted until MAX_QUICK_FAILURES quick failures in a row
