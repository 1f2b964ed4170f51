"""Dead letters: what ingest refused, kept (sealed) until an operator acts.

callvault dlq list [--reason R] [--tenant T] [--all] [--limit N] [--json]
callvault dlq show ID
callvault dlq replay ID | --reason R [--by USER]

``list`` and ``show`` never print personal data (``show`` is the redacted view: no
customer reference, landing URI or sha256). ``replay`` produces the original record
once more to its source topic (``callvault.recordings``) once the cause is fixed, and
audits ``dlq.replayed``; an entry is replayed once (if it fails again it comes back as
one more attempt of the same entry). An event naming a canonical customer reference is
sealed under that customer's subject key: once the customer is erased, ``show`` and
``replay`` answer ``dlq-original-erased``. Exit 0: done (also: nothing to replay); 1: an
entry that does not exist or could not be replayed; 2: configuration or broker errors.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from callvault.cli._common import echo_json, fail, open_services, settings_of
from callvault.errors import CallvaultError

__all__ = ["dlq"]


@click.group()
def dlq() -> None:
    """Dead letters: list, show (redacted) and replay what ingest refused."""


@dlq.command("list")
@click.option("--reason", default=None, help="Only entries with this reason code.")
@click.option("--tenant", default=None, help="Only entries of this tenant.")
@click.option("--all", "everything", is_flag=True, help="Include entries already replayed.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_context
def dlq_list(
    ctx: click.Context,
    reason: str | None,
    tenant: str | None,
    everything: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Dead letters, most recently seen first (no personal data)."""
    from storage.catalog.deadletters import DeadLetterState
    from streams.dlq import DeadLetterQueue

    with open_services(ctx) as services:
        queue = DeadLetterQueue.from_services(services)
        try:
            letters = services.dead_letters.list(
                reason=reason,
                state=None if everything else DeadLetterState.OPEN,
                limit=limit,
                tenant=tenant,
            )
            rows = [queue.summary(letter) for letter in letters]
        except CallvaultError as exc:
            fail(str(exc))
    if as_json:
        for row in rows:
            click.echo(_json_line(row))
        return
    if not rows:
        click.echo("no dead letters" + (f" with reason {reason}" if reason else ""))
        return
    click.echo(f"{'id':<28} {'reason':<20} {'tries':>5} {'last seen':<25} {'ref':<12} source")
    for row in rows:
        source = row["source"]
        where = f"{source['topic']}:{source['partition']}@{source['offset']}"
        state = "" if row["state"] == "open" else f" ({row['state']})"
        click.echo(
            f"{row['id']:<28} {row['reason']:<20} {row['attempts']:>5} "
            f"{row['last_seen'][:25]:<25} {row['recording_ref']:<12} {where}{state}"
        )


@dlq.command("show")
@click.argument("entry_id")
@click.pass_context
def dlq_show(ctx: click.Context, entry_id: str) -> None:
    """One dead letter, redacted: reason, source, attempts, and the event without its
    customer reference, landing URI or sha256. When the original was erased with its
    customer, "original" is "dlq-original-erased" and "event" is null."""
    from streams.dlq import DeadLetterQueue

    with open_services(ctx) as services:
        try:
            letter = services.dead_letters.get(entry_id)
            if letter is None:
                fail(f"no dead letter {entry_id!r}", 1)
            echo_json(DeadLetterQueue.from_services(services).show(letter))
        except CallvaultError as exc:
            fail(str(exc))


@dlq.command("replay")
@click.argument("entry_id", required=False)
@click.option("--reason", default=None, help="Replay every open entry with this reason code.")
@click.option("--by", "by", default=None, help="Who replays (audited; default cli:<worker id>).")
@click.pass_context
def dlq_replay(
    ctx: click.Context, entry_id: str | None, reason: str | None, by: str | None
) -> None:
    """Produce dead-lettered records once more to their source topic (audited).

    An entry whose original was erased with its customer (sealed under the customer's
    subject key, now destroyed) is not replayed: it is reported as
    "dlq-original-erased" (exit 1 when it was the one entry named; skipped with
    --reason).
    """
    from callvault.cli.run import broker_url
    from streams.dlq import ORIGINAL_ERASED, DeadLetterQueue

    if (entry_id is None) == (reason is None):
        fail("name one entry id, or --reason R")
    settings = settings_of(ctx)
    actor = f"user:{by}" if by else f"cli:{settings.worker_id}"
    with open_services(ctx) as services:
        queue = DeadLetterQueue.from_services(services)
        try:
            if entry_id is not None:
                letter = services.dead_letters.get(entry_id)
                if letter is None:
                    fail(f"no dead letter {entry_id!r}", 1)
                letters = [letter]
            else:
                letters = services.dead_letters.list(reason=reason, limit=10_000)
            if not letters:
                click.echo(f"nothing to replay with reason {reason}")
                return
            erased = [letter for letter in letters if queue.erased(letter)]
            letters = [letter for letter in letters if letter not in erased]
            for letter in erased:
                click.echo(f"{letter.entry_id}: not replayed: {ORIGINAL_ERASED} (its original "
                           "was erased with its customer)")  # fmt: skip
            if not letters:
                raise SystemExit(1 if entry_id is not None else 0)
            done = asyncio.run(_replay(queue, letters, actor, broker_url(settings)))
        except CallvaultError as exc:
            fail(str(exc))
    for letter, replayed in zip(letters, done, strict=True):
        click.echo(f"{letter.entry_id}: {'replayed' if replayed else 'already replayed'}")
    if entry_id is not None and not done[0]:
        raise SystemExit(1)


async def _replay(queue: Any, letters: list[Any], actor: str, url: str) -> list[bool]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from callvault.errors import ConfigError

    bootstrap = url.removeprefix("kafka://")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=20000)
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        raise ConfigError(f"cannot reach the broker at {url}: {type(exc).__name__}") from None
    loop = asyncio.get_running_loop()

    async def produce(topic: str, key: bytes | None, value: bytes) -> None:
        await producer.send_and_wait(topic, value=value, key=key)

    async def run(func: Any, *args: Any) -> Any:
        return await loop.run_in_executor(None, func, *args)

    try:
        return [
            await queue.replay(letter, by=actor, produce=produce, run=run) for letter in letters
        ]
    finally:
        await producer.stop()


def _json_line(row: dict[str, Any]) -> str:
    import json

    return json.dumps(row, sort_keys=True)
