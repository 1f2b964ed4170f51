"""``callvault announce``: hand a finished PBX recording to callvault (MixMonitor's
end command, FreeSWITCH's post-record hook). Exit codes a dialplan can test:

    0   announced (the event is on callvault.recordings)
    2   usage or configuration error
    65  refused: a field is missing or malformed, or the tenant is not this source's
        (the reason code is printed; nothing was moved)
    66  the recording file is missing, unreadable or no file (a FIFO; announced already?)
    73  the file could not be moved into the landing area
    75  the broker did not take the event: the file is claimed and its event waits in
        the sidecar, which the worker's reconciler re-announces; retrying is safe
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from callvault.cli._common import settings_of
from callvault.errors import CallvaultError
from callvault.settings import Settings
from storage.errors import LandingError

__all__ = ["announce_command", "EXIT_CODES", "produce_event"]

EXIT_CODES = {"ok": 0, "usage": 2, "refused": 65, "no-input": 66, "cant-create": 73, "temp": 75}
_NO_INPUT = frozenset({"landing-missing", "landing-not-regular", "uri-invalid"})
RECORDINGS_TOPIC = "callvault.recordings"


def _exit(kind: str, message: str) -> NoReturn:
    click.echo(f"callvault announce: {message}", err=True)
    sys.exit(EXIT_CODES[kind])


def bootstrap_servers(settings: Settings) -> str:
    if settings.broker:
        return settings.broker.removeprefix("kafka://")
    return f"127.0.0.1:{settings.embedded_broker_port}"


async def _produce(bootstrap: str, key: bytes, value: bytes, timeout: float) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(producer.start(), timeout)
        await asyncio.wait_for(producer.send_and_wait(RECORDINGS_TOPIC, value, key=key), timeout)
    finally:
        await producer.stop()


def produce_event(settings: Settings, event: dict[str, Any], timeout: float = 15.0) -> None:
    """Produce ``event`` to ``callvault.recordings``, keyed by its recording id (the
    partition every delivery of it lands on, as the worker produces it).

    Raises:
        OSError, asyncio.TimeoutError, KafkaError: the broker did not take it.
    """
    payload = json.dumps(event, sort_keys=True).encode()
    key = str(event["recording_id"]).encode()
    asyncio.run(_produce(bootstrap_servers(settings), key, payload, timeout))


def _pairs(legs: tuple[Path, ...], roles: tuple[str, ...]) -> list[tuple[Path, str]]:
    if len(legs) != len(roles):
        raise click.UsageError("give one --role after each --leg FILE")
    return list(zip(legs, roles, strict=True))


@click.command("announce")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--leg", "legs", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="One direction's file (repeat, each followed by --role).")  # fmt: skip
@click.option("--role", "roles", multiple=True, help="The role of the --leg before it.")
@click.option("--call-id", required=True, help="The PBX's call id (${UNIQUEID}, ${uuid}).")
@click.option("--customer-ref", required=True, help="The customer (CRM id or caller number).")
@click.option("--agent-id", help="The agent (extension, login); else the binding's default.")
@click.option("--recording-id", help="Defaults to --call-id.")
@click.option("--tenant", help="Must match the [[announce]] binding of the landing root.")
@click.option("--queue", help="Defaults to the binding's queue.")
@click.option("--direction", type=click.Choice(["inbound", "outbound", "internal"]))
@click.option("--consent", type=click.Choice(["notified", "granted", "declined"]))
@click.option("--started-at", required=True, help="ISO 8601 or Unix seconds (${EPOCH}).")
@click.option("--ended-at", help="ISO 8601 or Unix seconds; default: now.")
@click.option("--format", "audio_format", help="Default: from the file name (.raw is sln).")
@click.option("--sample-rate", type=int, help="For headerless files (sln, ulaw, alaw).")
@click.option("--channels", type=int, help="2 for MixMonitor's D option, RECORD_STEREO.")
@click.option("--channel-roles", help="e.g. customer,agent (left first).")
@click.option("--purpose", "purposes", multiple=True, help="Default: the policy's.")
@click.option("--pci-pause", "pci_pauses", multiple=True, help="START_MS-END_MS (repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print the event (customer redacted).")
@click.pass_context
def announce_command(
    ctx: click.Context,
    /,
    file: Path | None,
    legs: tuple[Path, ...],
    roles: tuple[str, ...],
    as_json: bool,
    **options: Any,
) -> None:
    """Claim a finished recording (FILE, or --leg FILE --role ROLE per direction), write
    its event beside it and produce it to callvault.recordings.

    \b
    Asterisk:   MixMonitor(${UNIQUEID}.wav,,callvault announce
                  /var/spool/asterisk/monitor/${UNIQUEID}.wav --started-at ${EPOCH} ...)
    FreeSWITCH: record_post_process_exec_api=system:callvault announce ${record_path} ...

    Exit codes: 0 announced, 2 usage, 65 refused (reason printed), 66 file missing,
    73 cannot move into the landing area, 75 broker unavailable (retry; the worker
    re-announces the sidecar).
    """
    from storage.landing import Landing
    from streams.errors import SourceRefused
    from streams.sources.announce import Leg, announce
    from streams.sources.config import load_sources

    settings = settings_of(ctx)
    pairs = _pairs(legs, roles)
    if file is None and not pairs:
        raise click.UsageError("give FILE or --leg FILE --role ROLE (twice or more)")
    fields = {
        name: value
        for name, value in {
            "call_id": options["call_id"],
            "customer_ref": options["customer_ref"],
            "agent_id": options["agent_id"],
            "recording_id": options["recording_id"],
            "queue": options["queue"],
            "direction": options["direction"],
            "consent": options["consent"],
            "started_at": options["started_at"],
            "ended_at": options["ended_at"] or datetime.now(UTC).isoformat(),
            "format": options["audio_format"],
            "sample_rate": options["sample_rate"],
            "channels": options["channels"],
            "channel_roles": options["channel_roles"],
            "purposes": list(options["purposes"]) or None,
            "pci_pauses": ";".join(options["pci_pauses"]) or None,
        }.items()
        if value is not None
    }
    try:
        bindings = load_sources(settings.sources)
        landing = Landing(settings.landing_roots, max_bytes=settings.max_audio_bytes)
    except CallvaultError as exc:
        _exit("usage", str(exc))
    try:
        outcome, mixed = announce(
            landing,
            bindings,
            file=file,
            legs=[Leg(path, role) for path, role in pairs],
            fields=fields,
            tenant=options["tenant"],
            clock=lambda: datetime.now(UTC),
        )
    except SourceRefused as exc:
        kind = "no-input" if exc.reason in _NO_INPUT else "refused"
        _exit(kind, f"{exc.reason}: {exc.detail}")
    except LandingError as exc:
        _exit("cant-create", f"landing-unavailable: {exc}")
    assert outcome.event is not None
    try:
        produce_event(settings, outcome.event)
    except Exception as exc:  # KafkaError, OSError, TimeoutError: the sidecar holds it
        _exit("temp", f"broker-unavailable: {type(exc).__name__}; the reconciler re-announces it")
    if mixed is not None:
        mixed.unlink(missing_ok=True)
    if as_json:
        shown = {**outcome.event, "customer_ref": "[redacted]"}
        click.echo(json.dumps(shown, indent=2, sort_keys=True))
    else:
        click.echo(f"announced {outcome.recording_id}")
