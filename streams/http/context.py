"""The one typed context every view reads its collaborators from.

:func:`streams.http.app.build_web_app` stores a :class:`WebContext` in the aiohttp app;
a view gets it with :func:`ctx_of`. Views read ``ctx.services.<store>`` on every
request (never a copy taken at start-up), so what the composition root hands down is
what they use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from storage.catalog.ratewindow import AccessRateWindow
from streams.endoflife import EndOfLife
from streams.evaluations import EvaluationService
from streams.http.auth import TokenVerifier, local_tokens
from streams.http.oidc import OidcVerifier, sso_of, verifier_for
from streams.http.playback import PlaybackGrants
from streams.http.rateguard import RateGuard
from streams.metrics import Metrics
from streams.services import Services
from streams.sources import Sources

__all__ = ["WebContext", "ctx_of", "run", "CONTEXT_KEY"]


@dataclass(frozen=True)
class WebContext:
    """What the views talk to. Build it with :meth:`over` (defaults for the rest).

    ``publish_recording(event, recording_id)`` produces an ingested event;
    ``health()`` is the ``/healthz`` body (liveness: no I/O), ``readiness()`` the
    ``/readyz`` body (``ready`` true or false, ``reasons``). ``grant_ttl`` is
    added to a recording's duration to give a playback grant's lifetime;
    ``first_window`` / ``window`` are the plaintext bytes decrypted before the first
    write of an audio response and per later write.
    """

    services: Services
    metrics: Metrics
    tokens: TokenVerifier
    endoflife: EndOfLife
    rate_guard: RateGuard
    grants: PlaybackGrants
    publish_recording: Callable[[bytes, str], Awaitable[None]]
    health: Callable[[], dict[str, Any]]
    evaluations: EvaluationService
    grant_ttl: timedelta = timedelta(minutes=10)
    first_window: int = 64 * 1024
    window: int = 1024 * 1024
    #: The telephony source adapters (streams/sources) and how a view hands an S3
    #: notification to the ``callvault.s3-events`` topic (notification, key).
    sources: Sources | None = None
    publish_s3_event: Callable[[bytes, str], Awaitable[None]] | None = None
    readiness: Callable[[], dict[str, Any]] | None = None

    @property
    def sso(self) -> OidcVerifier | None:
        """The identity provider's verifier, when staff may sign in with SSO."""
        return sso_of(self.tokens)

    @classmethod
    def over(
        cls,
        services: Services,
        *,
        metrics: Metrics,
        publish_recording: Callable[[bytes, str], Awaitable[None]],
        health: Callable[[], dict[str, Any]],
        tokens: TokenVerifier | None = None,
        endoflife: EndOfLife | None = None,
        rate_guard: RateGuard | None = None,
        grants: PlaybackGrants | None = None,
        evaluations: EvaluationService | None = None,
        grant_ttl: timedelta = timedelta(minutes=10),
        first_window: int = 64 * 1024,
        window: int = 1024 * 1024,
        sources: Sources | None = None,
        publish_s3_event: Callable[[bytes, str], Awaitable[None]] | None = None,
        readiness: Callable[[], dict[str, Any]] | None = None,
    ) -> WebContext:
        """The context over ``services``: local tokens (and the IdP's when the policy has an
        ``sso:`` section), the policy's rate limits, grants signed by the keyring and an
        :class:`EndOfLife` bundle unless given."""
        if tokens is None:
            local = local_tokens(services.keyring, services.policy)
            tokens = verifier_for(services.policy, local)
        if endoflife is None:
            endoflife = EndOfLife.from_services(
                services, actor=services.config.actor, metrics=metrics
            )
        return cls(
            services=services,
            metrics=metrics,
            tokens=tokens,
            endoflife=endoflife,
            rate_guard=rate_guard
            or RateGuard(
                services.policy.rate_limit_for,
                window_store=AccessRateWindow(services.catalog.database),
            ),
            grants=grants or PlaybackGrants(services.keyring),
            publish_recording=publish_recording,
            health=health,
            evaluations=evaluations or EvaluationService(services, metrics),
            grant_ttl=grant_ttl,
            first_window=max(1, first_window),
            window=max(1, window),
            sources=sources
            or Sources(
                bindings=services.sources,
                landing=services.landing,
                catalog=services.catalog,
                metrics=metrics,
                clock=services.clock,
                max_bytes=services.config.max_audio_bytes,
            ),
            publish_s3_event=publish_s3_event,
            readiness=readiness,
        )

    def now(self) -> datetime:
        return self.services.clock()


CONTEXT_KEY: web.AppKey[WebContext] = web.AppKey("callvault", WebContext)


def ctx_of(request: web.Request) -> WebContext:
    """The context of the app serving ``request``."""
    return request.app[CONTEXT_KEY]


async def run(func: Callable[..., Any], *args: Any) -> Any:
    """Run blocking storage work off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)
