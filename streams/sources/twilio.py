"""Twilio's ``RecordingStatusCallback``: a signed form POST when a recording is ready.

Twilio POSTs ``application/x-www-form-urlencoded`` parameters (``AccountSid``,
``CallSid``, ``RecordingSid``, ``RecordingUrl``, ``RecordingStatus``,
``RecordingDuration``, ``RecordingChannels``, ``RecordingStartTime``,
``RecordingSource``...) to the ``recordingStatusCallback`` URL, signed in
``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the account's auth token, of the
full URL followed by every POST parameter name and value, sorted by name
(:func:`twilio_signature`, the same computation as the ``twilio`` package's
``RequestValidator``, which the tests use to sign). Twilio says nothing of the call
beyond that, so the call fields callvault needs travel in the callback URL's query
string, which the signature covers: ``?customer_ref=...&agent_id=...&queue=...``
(any field :func:`~streams.sources.base.call_fields` knows, e.g. ``direction``,
``consent``, ``channel_roles``, ``pci_pauses``).

:meth:`TwilioSource.handle`:

1. picks the binding by ``AccountSid`` (none: 403 ``unknown-source``) and checks the
   signature with that account's token (missing: 403 ``signature-missing``; wrong:
   403 ``signature-invalid``), trying the URL with and without its default port;
2. ``RecordingStatus`` other than ``completed``: skipped (``in-progress``);
3. fetches ``RecordingUrl`` + ``.wav`` (or ``.mp3``; ``?RequestedChannels=2`` for a
   dual-channel recording) with the account's credentials (HTTP basic), from a host
   the binding allows only (403 ``media-host-not-allowed``), retried with back-off on
   connection errors, 404 (media not yet ready), 429 and 5xx, at most
   ``max_bytes`` (413 ``media-too-large``; Content-Length checked first);
4. lands it as ``<RecordingSid>.<format>`` (an id Twilio makes, never personal data),
   writes the sidecar and returns ``mapped``: the view produces the event.

Dual-channel layout: "The first channel of a dual-channel recording contains the
parent call and the second channel contains the child call". For an inbound call
the parent is the customer: ``channel_roles`` ``["customer", "agent"]``; for an
outbound one (``direction=outbound`` in the URL) ``["agent", "customer"]``; the URL's
``channel_roles`` overrides both. Times: ``RecordingStartTime`` (RFC 2822) plus
``RecordingDuration`` seconds. ``recording_id`` is the ``RecordingSid``, ``call_id``
the ``CallSid``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp

from storage.landing import Landing, LandingRejected
from streams.sources.base import (
    SkipReason,
    SourceOutcome,
    SourceReason,
    build_event,
    call_fields,
    refuse,
)
from streams.sources.config import SourceBindings, TwilioBinding

__all__ = ["TwilioSource", "twilio_signature", "signature_valid", "callback_fields", "SOURCE"]

log = logging.getLogger(__name__)

SOURCE = "twilio"
_RETRY_STATUSES = frozenset({404, 408, 429, 500, 502, 503, 504})
_RECORDING_SID_LENGTH = 34


def twilio_signature(token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(token, url + sorted name+value))."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    mac = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """The URL as given, without its default port, and with it (Twilio signs either)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    variants = [url]
    if default is not None:
        bare = urlunsplit(parts._replace(netloc=host))
        with_port = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
        variants += [v for v in (bare, with_port) if v not in variants]
    return variants


def signature_valid(
    token: str, url: str, params: Sequence[tuple[str, str]], signature: str
) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` (with or without default port)."""
    return any(
        hmac.compare_digest(twilio_signature(token, variant, params), signature)
        for variant in _port_variants(url)
    )


def _start(params: Mapping[str, str]) -> datetime | None:
    raw = params.get("RecordingStartTime")
    if not raw:
        return None
    try:
        value = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        raise refuse(
            SourceReason.INVALID_METADATA, "RecordingStartTime: not an RFC 2822 time"
        ) from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def callback_fields(
    params: Mapping[str, str], query: Mapping[str, str], binding: TwilioBinding
) -> dict[str, Any]:
    """The call fields of a callback: Twilio's parameters, then the URL's query."""
    start = _start(params)
    fields = call_fields(
        {
            "recording_id": params.get("RecordingSid"),
            "call_id": params.get("CallSid"),
            "started_at": start.isoformat() if start else None,
            "duration_seconds": params.get("RecordingDuration"),
        },
        query,
    )
    channels = params.get("RecordingChannels", "1")
    if channels == "2":
        fields["channels"] = 2
        if "channel_roles" not in fields:
            direction = str(fields.get("direction") or binding.defaults.direction)
            parent_is_customer = direction != "outbound"
            fields["channel_roles"] = (
                ["customer", "agent"] if parent_is_customer else ["agent", "customer"]
            )
    return fields


class TwilioSource:
    """Validates callbacks, fetches their media, lands it (see the module docstring).

    ``fetch_attempts`` / ``backoff`` bound the media fetch (seconds, doubled each
    attempt); ``session_factory`` makes the HTTP client (tests: the default).
    """

    def __init__(
        self,
        *,
        bindings: SourceBindings,
        landing: Landing,
        clock: Callable[[], datetime],
        max_bytes: int,
        fetch_attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 30.0,
        run: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.bindings = bindings
        self.landing = landing
        self.clock = clock
        self.max_bytes = max_bytes
        self.fetch_attempts = max(1, fetch_attempts)
        self.backoff = backoff
        self.timeout = timeout
        self._run = run or _in_thread

    async def handle(
        self,
        url: str,
        params: Sequence[tuple[str, str]],
        signature: str | None,
    ) -> SourceOutcome:
        """One callback: ``url`` as Twilio requested it (public base + path + query),
        the POST ``params`` in order, the ``X-Twilio-Signature`` header.

        Raises:
            SourceRefused: every refusal, with the status the route answers
                (403 for signature and binding problems).
            LandingError: the media could not be landed (worth retrying: 503).
        """
        form = dict(params)
        sid = form.get("AccountSid", "")
        binding = self.bindings.twilio_for(sid)
        if binding is None:
            raise refuse(
                SourceReason.UNKNOWN_SOURCE, "no Twilio source binds this account", status=403
            )
        if not signature:
            raise refuse(
                SourceReason.SIGNATURE_MISSING, "X-Twilio-Signature is missing", status=403
            )
        if not signature_valid(binding.auth_token.reveal(), url, params, signature):
            raise refuse(
                SourceReason.SIGNATURE_INVALID, "X-Twilio-Signature does not verify", status=403
            )
        if form.get("RecordingStatus", "completed") != "completed":
            status = form.get("RecordingStatus", "")
            return SourceOutcome.skipped(SOURCE, SkipReason.IN_PROGRESS, status[:32])
        recording_sid = form.get("RecordingSid", "")
        if not recording_sid.startswith("RE") or len(recording_sid) != _RECORDING_SID_LENGTH:
            raise refuse(SourceReason.MALFORMED, "RecordingSid must be RE + 32 hex digits")
        if not recording_sid[2:].isalnum() or not form.get("RecordingUrl"):
            raise refuse(SourceReason.MALFORMED, "a completed callback needs RecordingUrl")
        query = dict(parse_qsl(urlsplit(url).query))
        fields = callback_fields(form, query, binding)
        media_url = self._media_url(binding, form["RecordingUrl"], fields.get("channels") == 2)
        audio_format = binding.media_format
        # Every field checked before anything is fetched.
        build_event(
            fields, binding.defaults,
            {"uri": "file:///pending", "format": audio_format, "sha256": "0" * 64},
            now=self.clock(),
        )  # fmt: skip
        media = await self._fetch(binding, media_url)
        try:
            uri = await self._run(self.landing.land, f"{recording_sid}.{audio_format}", media)
        except LandingRejected as exc:
            raise refuse(exc.reason, "the media cannot be landed") from None
        event = build_event(
            fields,
            binding.defaults,
            {"uri": uri, "format": audio_format, "sha256": hashlib.sha256(media).hexdigest()},
            now=self.clock(),
        )
        await self._run(self.landing.write_sidecar, uri, event)
        return SourceOutcome.mapped(SOURCE, event)

    def _media_url(self, binding: TwilioBinding, recording_url: str, dual: bool) -> str:
        parts = urlsplit(recording_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise refuse(SourceReason.MALFORMED, "RecordingUrl is not an http(s) URL")
        host = parts.hostname.lower()
        netloc = f"{host}:{parts.port}" if parts.port else host
        if host not in binding.media_hosts and netloc not in binding.media_hosts:
            raise refuse(
                SourceReason.MEDIA_HOST, "RecordingUrl is on a host this source does not allow",
                status=403,
            )  # fmt: skip
        path = parts.path
        if not path.endswith((".wav", ".mp3")):
            path += f".{binding.media_format}"
        return urlunsplit(
            parts._replace(path=path, query="RequestedChannels=2" if dual else "", fragment="")
        )

    async def _fetch(self, binding: TwilioBinding, url: str) -> bytes:
        credentials = f"{binding.account_sid}:{binding.auth_token.reveal()}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        delay = self.backoff
        last = "no attempt"
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(self.fetch_attempts):
                if attempt:
                    await asyncio.sleep(delay)
                    delay *= 2
                try:
                    async with session.get(url, headers=headers, allow_redirects=False) as response:
                        if response.status in _RETRY_STATUSES:
                            last = f"HTTP {response.status}"
                            continue
                        if response.status != 200:
                            raise refuse(
                                SourceReason.MEDIA_UNAVAILABLE,
                                f"the media answered HTTP {response.status}",
                                status=502,
                            )
                        if (response.content_length or 0) > self.max_bytes:
                            raise refuse(
                                SourceReason.MEDIA_TOO_LARGE,
                                f"the media has more than {self.max_bytes} bytes",
                                status=413,
                            )
                        chunks, size = [], 0
                        async for chunk in response.content.iter_chunked(1 << 16):
                            size += len(chunk)
                            if size > self.max_bytes:
                                raise refuse(
                                    SourceReason.MEDIA_TOO_LARGE,
                                    f"the media has more than {self.max_bytes} bytes",
                                    status=413,
                                )
                            chunks.append(chunk)
                        if not size:
                            last = "an empty body"
                            continue
                        return b"".join(chunks)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last = type(exc).__name__
        log.warning("Twilio media not fetched after %d attempts: %s", self.fetch_attempts, last)
        raise refuse(
            SourceReason.MEDIA_UNAVAILABLE,
            f"the media could not be fetched after {self.fetch_attempts} attempts ({last})",
            status=502,
        )


async def _in_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)
