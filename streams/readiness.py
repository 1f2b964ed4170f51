"""Readiness: whether this worker can do its work now, and if not, why.

``GET /healthz`` (liveness) only says the event loop answers: it does no I/O, so a
catalog that does not answer never makes a live worker look dead (and restarted for
nothing). ``GET /readyz`` (readiness) answers from the last :meth:`Readiness.refresh`
(a worker timer, every couple of seconds, probes off the event loop), with a reason
code for each failing check:

=====================  ==========================================================
reason                 when
=====================  ==========================================================
``catalog-unreachable``  ``SELECT 1`` failed
``catalog-timeout``      ``SELECT 1`` gave no answer within the probe timeout (a
                         blackholed network, a lock); one probe in flight at most
``vault-unreachable``    a HEAD/stat of a probe key failed (or timed out)
``broker-unreachable``   the broker did not answer a metadata request in time
``ingest-stalled``       no ingest batch finished for ``ready_stall_seconds`` while
                         events wait (consumer lag above 0); logged once per stall
                         (what, since when), gauge ``callvault_ingest_stalled_seconds``
``disk-full``            less than ``ready_min_free_bytes`` free under the data folder
                         or a ``file://`` landing root, or a write failed with
                         ENOSPC/EFBIG/EDQUOT since the last batch that went through
``not-checked``          no refresh yet, or the last one is older than 30 s
=====================  ==========================================================

Gauges: ``callvault_ready`` (1/0) and ``callvault_not_ready{reason}`` (1 for each
failing reason).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.ingest import work_folder
from streams.metrics import Metrics
from streams.services import Services

__all__ = ["Readiness", "REASONS", "DISK_FULL_ERRNOS"]

log = logging.getLogger(__name__)

REASONS = (
    "catalog-unreachable",
    "catalog-timeout",
    "vault-unreachable",
    "broker-unreachable",
    "ingest-stalled",
    "disk-full",
    "not-checked",
)
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
PROBE_TIMEOUT = 2.0
STALE_AFTER = 30.0
_PROBE_KEY = "health/readiness-probe"


class _Probe:
    """A blocking check in its own thread, one in flight at most: a probe that hangs
    (a blackholed database) is reported as a timeout, never piled up."""

    def __init__(self, name: str, call: Callable[[], Any]) -> None:
        self.call = call
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ready-{name}")
        self._pending: Future[Any] | None = None
        self._pending_since = 0.0

    async def run(self, timeout: float) -> str | None:
        """``None`` (fine), ``"timeout"`` or the failure's type name."""
        if self._pending is None or self._pending.done():
            self._pending = self._pool.submit(self.call)
            self._pending_since = time.monotonic()
        pending = self._pending
        left = max(0.05, timeout - (time.monotonic() - self._pending_since))
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending)), left)
        except TimeoutError:
            return "timeout"
        except Exception as exc:
            return type(exc).__name__
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Readiness:
    """See the module docstring. ``broker_probe`` is an awaitable check that raises when
    the broker does not answer (the worker's audit topic tail); ``lag`` the last known
    consumer lag of the recordings topic on this worker (``None``: unknown)."""

    def __init__(
        self,
        services: Services,
        metrics: Metrics,
        *,
        broker_probe: Callable[[], Awaitable[Any]] | None = None,
        lag: Callable[[], int | None] = lambda: None,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.services, self.metrics = services, metrics
        config = services.config
        self.stall_after = float(config.ready_stall_seconds)
        self.min_free = int(config.ready_min_free_bytes)
        # the data dir, ingest's work folder (compressed audio is copied there; it may
        # be a mount of its own) and the landing folders
        self.folders = [config.data_dir, work_folder(config.data_dir)] + [
            Path(root.removeprefix("file://"))
            for root in config.landing_roots
            if root.startswith("file://")
        ]
        self.broker_probe, self.lag = broker_probe, lag
        self.probe_timeout = probe_timeout
        self._catalog = _Probe("catalog", lambda: services.catalog.database.fetch_one("SELECT 1"))
        self._vault = _Probe("vault", lambda: services.vault.exists(_PROBE_KEY))
        self._disk = _Probe("disk", self._free_bytes)
        self.last_progress = time.monotonic()
        self._progress_wall = datetime.now(UTC)
        self._stalled_since: float | None = None
        self._disk_error: str | None = None
        self._report: dict[str, Any] = {"ready": False, "reasons": ["not-checked"]}
        self._report_at = 0.0
        self._last_free: list[tuple[Path, int]] = []
        self._failing: set[str] = set()
        self._last_lag = 0
        self._recovered: list[asyncio.Future[None]] = []
        for reason in REASONS:
            metrics.not_ready.labels(reason).set(0)

    # -- what the worker reports ------------------------------------------------------
    def progressed(self) -> None:
        """An ingest batch finished (stored or dead-lettered): the stream moves."""
        self.last_progress = time.monotonic()
        self._progress_wall = datetime.now(UTC)
        self._disk_error = None

    def write_failed(self, exc: BaseException) -> None:
        """A failure seen by the worker; a full disk (ENOSPC, EFBIG, EDQUOT anywhere in
        its chain) makes it not ready until a batch goes through."""
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
                self._disk_error = errno.errorcode.get(seen.errno or 0, "disk-full")
                return
            seen = seen.__cause__ or seen.__context__

    async def recovered(self) -> None:
        """Return once a check that failed passes again (the catalog, vault or broker
        answers): retry loops wait on it beside their back-off."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._recovered.append(future)
        try:
            await future
        finally:
            if future in self._recovered:
                self._recovered.remove(future)

    def report(self) -> dict[str, Any]:
        """The last readiness report (cheap; what ``/readyz`` answers)."""
        if time.monotonic() - self._report_at > STALE_AFTER:
            return {"ready": False, "reasons": ["not-checked"], "checks": {}}
        return self._report

    # -- the timer's body -------------------------------------------------------------
    async def refresh(self) -> dict[str, Any]:
        checks: dict[str, str] = {}
        reasons: list[str] = []
        catalog = await self._catalog.run(self.probe_timeout)
        if catalog is not None:
            reasons.append("catalog-timeout" if catalog == "timeout" else "catalog-unreachable")
            checks["catalog"] = catalog
        vault = await self._vault.run(self.probe_timeout)
        if vault is not None:
            reasons.append("vault-unreachable")
            checks["vault"] = vault
        if self.broker_probe is not None:
            try:
                await asyncio.wait_for(self.broker_probe(), self.probe_timeout * 2)
            except Exception as exc:
                reasons.append("broker-unreachable")
                checks["broker"] = type(exc).__name__
        stall = self._stall()
        if stall is not None:
            reasons.append("ingest-stalled")
            checks["ingest"] = stall
        disk = await self._disk.run(self.probe_timeout)
        low = [str(path) for path, free in self._last_free if free < self.min_free]
        if disk is None and low:
            checks["disk"] = f"less than {self.min_free} bytes free"
        if self._disk_error:
            checks["disk"] = f"writes fail ({self._disk_error})"
        if "disk" in checks:
            reasons.append("disk-full")
        failing = set(checks) & {"catalog", "vault", "broker"}
        if self._failing - failing:  # something answers again: wake the retry loops
            for future in self._recovered:
                if not future.done():
                    future.set_result(None)
        self._failing = failing
        report = {"ready": not reasons, "reasons": reasons, "checks": checks}
        self._report, self._report_at = report, time.monotonic()
        self.metrics.ready.set(0 if reasons else 1)
        for reason in REASONS:
            self.metrics.not_ready.labels(reason).set(1 if reason in reasons else 0)
        return report

    def _free_bytes(self) -> None:
        found = []
        for folder in self.folders:
            try:
                found.append((folder, shutil.disk_usage(folder).free))
            except FileNotFoundError:
                continue
        self._last_free = found

    def _stall(self) -> str | None:
        """What stalls, and since when, or ``None``; logs once per stall. An unknown lag
        (the broker did not answer the lag query) counts as the last one known."""
        known = self.lag()
        if known is not None:
            self._last_lag = known
        lag = self._last_lag
        idle = time.monotonic() - self.last_progress
        stalled = bool(lag) and idle >= self.stall_after
        if not stalled:
            if self._stalled_since is not None:
                log.warning(
                    "ingest moves again after %.0f s", time.monotonic() - self._stalled_since
                )
            self._stalled_since = None
            self.metrics.ingest_stalled_seconds.set(0)
            return None
        if self._stalled_since is None:
            self._stalled_since = time.monotonic()
            log.warning(
                "ingest stalled: no batch finished since %s (%.0f s) while %s events wait",
                self._progress_wall.isoformat(timespec="seconds"),
                idle,
                lag,
            )
        self.metrics.ingest_stalled_seconds.set(idle)
        return f"no progress since {self._progress_wall.isoformat(timespec='seconds')}, lag {lag}"

    def close(self) -> None:
        for probe in (self._catalog, self._vault, self._disk):
            probe.close()
