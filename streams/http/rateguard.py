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

Limitation: the state lives in memory, per worker process. With N workers behind a
load balancer a principal may pull up to N x limit per window, and a restart forgets
the window. A multi-worker deployment that needs a hard global limit should back the
guard with the catalog database (count ``access.*`` grants in the audit log per
actor over the window) or a shared store; the interface stays the same.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from policies import Principal

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
    ) -> None:
        if window <= timedelta(0):
            raise ValueError("the rate window must be positive")
        self._limit_for = limit_for
        self._window = window
        self._seen: dict[tuple[str, str, str], OrderedDict[str, datetime]] = {}
        self._lock = threading.Lock()

    @property
    def window(self) -> timedelta:
        return self._window

    def admit(self, principal: Principal, recording_id: str, now: datetime) -> RateVerdict:
        """Count ``recording_id`` for ``principal`` at ``now`` unless over the limit."""
        limit = self._limit_for(principal.role)
        key = (principal.role, principal.org or "", principal.user)
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
        with self._lock:
            seen: Mapping[str, datetime] = self._seen.get(key, {})
            return sum(1 for at in seen.values() if at > now - self._window)
