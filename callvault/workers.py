"""``callvault worker --processes N``: N worker processes on one host, one consumer group.

Why processes: AES-GCM, sha256 and ``audioop`` hold the GIL, so one worker process is
capped at one core however many pipeline threads it runs. N processes are N members of
the consumer group ``callvault``: the broker gives each a share of the partitions
(``CALLVAULT_PARTITIONS``, default 8, is the most processes that can share the ingest),
and each runs the same pipeline with the same guarantees as a lone worker: a batch's
offsets are committed only after its recordings are durable in the vault and the
catalog, ``recording_id`` is the idempotency key, so a process killed mid-batch (or the
whole group) leaves work that the next owner of its partitions redoes, once.

What a caller may rely on:

- The parent checks the settings and the backends and binds the web port before any
  child starts (one line and exit 2 on a problem, as for a lone worker). The children
  are forked from it and share the listening socket: the HTTP API is served on the one
  port by whichever process accepts the connection (``/healthz`` names it).
- Children are named ``<CALLVAULT_WORKER_ID>-<i>`` (logs, audit actors, leases) and die
  with the parent (``PR_SET_PDEATHSIG``): a SIGKILL of the parent ends them all.
- A child that stops on its own is started again after a pause (its partitions move
  to the others meanwhile); one that keeps failing within seconds of its start
  (:data:`MAX_QUICK_FAILURES` times in a row) stops the whole group, exit non-zero.
- SIGTERM or SIGINT to the parent stops every child cleanly; exit 0 once they are all
  stopped.
- Singletons (the retention sweep, the landing reconciler, key rotation) run in one
  process at a time whatever N is: they take a lease in the catalog
  (:mod:`storage.catalog.leases`).
- ``/metrics`` answers for the process that accepted the scrape; run one process per
  host (or per pod) with its own port where each must be scraped.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from callvault.settings import Settings

__all__ = ["run_worker_processes", "MAX_QUICK_FAILURES", "child_worker_id"]

log = logging.getLogger(__name__)

#: A child failing within :data:`QUICK_SECONDS` of its start this many times in a row
#: stops the group (a configuration or backend problem restarting cannot cure).
MAX_QUICK_FAILURES = 5
QUICK_SECONDS = 10.0
RESTART_PAUSE = 1.0
_PR_SET_PDEATHSIG = 1


def child_worker_id(worker_id: str, index: int) -> str:
    """The worker id of child ``index`` (1-based) of a worker named ``worker_id``."""
    return f"{worker_id}-{index}"


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run_worker_processes(
    settings: Settings,
    processes: int,
    web_socket: socket.socket,
    run_one: Callable[[Settings, socket.socket], int],
) -> int:
    """Fork ``processes`` children, each running ``run_one(its settings, web_socket)``,
    and supervise them until SIGTERM/SIGINT or a child keeps failing; the exit status.

    The caller has checked the settings and bound ``web_socket``; nothing that starts
    threads may have run in this process before (they would not survive the fork).
    """
    if processes < 1:
        raise ValueError("processes must be at least 1")
    parent = os.getpid()
    children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
    stopping = False

    def start(index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                _die_with_parent()
                if os.getppid() != parent:  # the parent died before prctl
                    os._exit(1)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                mine = dataclasses.replace(
                    settings, worker_id=child_worker_id(settings.worker_id, index)
                )
                code = run_one(mine, web_socket)
            except BaseException:  # the child must never fall back into the parent's code
                logging.getLogger(__name__).exception("worker process %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = (index, time.monotonic())

    def stop_all(signum: int, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    quick_failures = 0
    status = 0
    try:
        for index in range(1, processes + 1):
            start(index)
        print(
            f"callvault worker: {processes} processes ({', '.join(map(str, children))}) "
            f"sharing {web_socket.getsockname()[0]}:{web_socket.getsockname()[1]}",
            flush=True,
        )
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if pid not in children:
                continue
            index, started = children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping:
                status = status or (code if code > 0 else 0)
                continue
            quick = time.monotonic() - started < QUICK_SECONDS
            quick_failures = quick_failures + 1 if quick else 0
            print(
                f"callvault worker: process {index} (pid {pid}) stopped with status {code}; "
                + ("giving up" if quick_failures >= MAX_QUICK_FAILURES else "restarting it"),
                file=sys.stderr,
                flush=True,
            )
            if quick_failures >= MAX_QUICK_FAILURES:
                status = code if code > 0 else 1
                stop_all(signal.SIGTERM)
                continue
            time.sleep(RESTART_PAUSE)
            if not stopping:
                start(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for pid in list(children):  # only on an unexpected error of the supervisor
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return status
