"""Per-principal sliding-window rate guard for audio releases.

A reviewer may pull at most ``limit_for(role)`` *distinct recordings* per window
(one hour by default; the limit is ``policy.rate_limit_for(role)``, set per role in the
policy file's ``rate_limits``). Fetching the same recording again inside the window
(seeking, Range requests, replaying) does not count again, so a player never trips
the guard; pulling many different recordings does. A role with no limit in the
policy is not limited here.

What a caller may rely on:

- :meth:`RateGuard.admit` is atomic (thread-safe) and returns a :class:`RateVerdict`;
  a denied request does not consume quota. The denial reason is ``rate-limited``
  (:data:`RATE_LIMITED`), carried by the audit record and the HTTP 429 error.
- Principals are keyed by (role, org, user); nothing else is kept, and entries older
  than the window are dropped on the next call for that principal.

- With a ``window_store`` (:class:`storage.catalog.ratewindow.AccessRateWindow`, what
  the worker uses) the window lives in the catalog: every worker process and host
  counts into the same window, so N workers allow the limit, not N x the limit, and a
  restart forgets nothing. Without one (unit tests, benchmarks) it lives in memory,
  per process.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from policies import Principal
from storage.catalog.ratewindow import AccessRateWindow

__all__ = ["RateGuard", "RateVerdict", "RATE_LIMITED"]

RATE_LIMITED = "rate-limited"


@dataclass(frozen=True)
class RateVerdict:
    """``allowed``; ``used``/``limit`` after this call (``limit`` None = unlimited);
    ``retry_after`` seconds until a slot frees up when denied."""

    allowed: bool
    used: int
    limit: int | None
    retry_after: int = 0

    @property
    def reason(self) -> str:
        return "" if self.allowed else RATE_LIMITED


class RateGuard:
    """Distinct recordings per principal per sliding window.

    ``limit_for(role)`` gives the limit (``None``: unlimited); ``window`` defaults to
    one hour. Raises ValueError for a non-positive window.
    """

    def __init__(
        self,
        limit_for: Callable[[str], int | None],
        *,
        window: timedelta = timedelta(hours=1),
        window_store: AccessRateWindow | None = None,
    ) -> None:
        if window <= timedelta(0):
            raise ValueError("the rate window must be positive")
        self._limit_for = limit_for
        self._window = window
        self._store = window_store
        self._seen: dict[tuple[str, str, str], OrderedDict[str, datetime]] = {}
        self._lock = threading.Lock()

    @property
    def window(self) -> timedelta:
        return self._window

    def admit(self, principal: Principal, recording_id: str, now: datetime) -> RateVerdict:
        """Count ``recording_id`` for ``principal`` at ``now`` unless over the limit
        (blocking with a ``window_store``: call it off the event loop).

        Raises:
            CatalogError: the window store failed (with a ``window_store``).
        """
        limit = self._limit_for(principal.role)
        key = (principal.role, principal.org or "", principal.user)
        if self._store is not None:
            got = self._store.admit(_store_key(key), recording_id, now, now - self._window, limit)
            retry = 0
            if not got.allowed:
                oldest = got.oldest or now
                retry = max(1, int((oldest + self._window - now).total_seconds()) + 1)
            return RateVerdict(got.allowed, got.used, limit, retry)
        with self._lock:
            seen = self._seen.setdefault(key, OrderedDict())
            horizon = now - self._window
            while seen and next(iter(seen.values())) <= horizon:
                seen.popitem(last=False)
            if recording_id in seen:
                seen[recording_id] = now  # re-listening: refresh, never counts twice
                seen.move_to_end(recording_id)
                return RateVerdict(True, len(seen), limit)
            if limit is not None and len(seen) >= limit:
                oldest = next(iter(seen.values()), now)
                retry = max(1, int((oldest + self._window - now).total_seconds()) + 1)
                return RateVerdict(False, len(seen), limit, retry)
            seen[recording_id] = now
            return RateVerdict(True, len(seen), limit)

    def used(self, principal: Principal, now: datetime) -> int:
        """Distinct recordings counted for ``principal`` in the window ending at ``now``."""
        key = (principal.role, principal.org or "", principal.user)
        if self._store is not None:
            return self._store.used(_store_key(key), now - self._window)
        with self._lock:
            seen: Mapping[str, datetime] = self._seen.get(key, {})
            return sum(1 for at in seen.values() if at > now - self._window)


def _store_key(key: tuple[str, str, str]) -> str:
    """One text key per principal (role, org, user), unambiguous whatever they hold."""
    return json.dumps(list(key), separators=(",", ":"))
