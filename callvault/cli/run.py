"""Running callvault: the embedded default, a worker, the demo.

``callvault up`` starts, as children tied to it (``PR_SET_PDEATHSIG``: even a SIGKILL of
``callvault up`` takes them along), the embedded S3 server (SeaweedFS, state in
``$CALLVAULT_DATA_DIR/s3``) and the tansu broker keeping its topics in the S3 bucket
``callvault-broker`` there, then runs the worker in this process. Topics, offsets and
consumer groups (recordings, DLQ, audit, privacy requests) survive a restart and a kill -9
of any of them. ``CALLVAULT_EMBEDDED_BROKER_STORAGE=memory`` keeps topics in memory and
starts no S3 server. Ctrl-C stops the worker, then the broker, then the S3 server.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError
from callvault.settings import Settings

if TYPE_CHECKING:
    from callvault.broker import EmbeddedBroker

__all__ = ["up", "worker", "demo", "BROKER_BUCKET"]


def _broker_url(settings: Settings) -> str:
    return settings.broker or f"kafka://127.0.0.1:{settings.embedded_broker_port}"


def _run_worker(settings: Settings, broker_url: str) -> None:
    from callvault.services import build_services
    from streams.app import Worker

    services = build_services(settings)
    try:
        Worker(services, broker_url=broker_url).run()
    finally:
        services.close()


#: The bucket of the embedded S3 server that holds the embedded broker's topics.
BROKER_BUCKET = "callvault-broker"


@click.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start the embedded default: S3 server (SeaweedFS) and tansu broker keeping its
    topics on it, one worker, web server (Ctrl-C stops all)."""
    settings = settings_of(ctx)
    try:
        if settings.broker:
            click.echo(f"using the broker at {settings.broker} (CALLVAULT_BROKER)")
            _run_worker(settings, settings.broker)
            return
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as children:  # stopped in reverse: worker, broker, S3 server
            broker = children.enter_context(_embedded_broker(settings, children))
            click.echo(
                f"callvault up: broker {broker.url} (topics {_where_topics(settings)}), "
                f"web http://{settings.web_host}:{settings.web_port}, "
                f"state in {settings.data_dir}\n"
                "  try `callvault demo` in another shell; Ctrl-C stops everything"
            )
            _run_worker(settings, broker.url)
    except CallvaultError as exc:
        fail(str(exc))


def _where_topics(settings: Settings) -> str:
    if settings.embedded_broker_storage == "memory":
        return "in memory"
    return f"on the embedded S3 server, {settings.data_dir / 's3'}"


def _embedded_broker(settings: Settings, children: ExitStack) -> EmbeddedBroker:
    """The embedded broker, on the embedded S3 server unless its storage is memory
    (the S3 server is entered into ``children`` first, so it stops last)."""
    from callvault.broker import EmbeddedBroker
    from callvault.seaweed import EmbeddedS3

    log_file = settings.data_dir / "broker.log"
    if settings.embedded_broker_storage == "memory":
        return EmbeddedBroker(settings.embedded_broker_port, log_file=log_file)
    s3 = children.enter_context(EmbeddedS3(settings.data_dir / "s3"))
    s3.ensure_bucket(BROKER_BUCKET)
    return EmbeddedBroker(
        settings.embedded_broker_port,
        log_file=log_file,
        storage=f"s3://{BROKER_BUCKET}/",
        s3_endpoint=s3.endpoint,
        s3_credentials=s3.credentials,
    )


@click.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run one worker against CALLVAULT_BROKER (or the embedded broker's port)."""
    settings = settings_of(ctx)
    try:
        _run_worker(settings, _broker_url(settings))
    except CallvaultError as exc:
        fail(str(exc))


@click.command()
@click.option("--url", default=None, help="Web server URL (default: from CALLVAULT_WEB_PORT).")
@click.option(
    "--calls",
    default=5,
    show_default=True,
    help="Number of ordinary calls besides the special ones.",
)
@click.option(
    "--timeout", default=60.0, show_default=True, help="Seconds to wait for the outcomes."
)
@click.pass_context
def demo(ctx: click.Context, url: str | None, calls: int, timeout: float) -> None:
    """Push synthetic calls (one declined, one with a PCI pause, one bad) and show their fate."""
    from callvault.demo import run_demo

    settings = settings_of(ctx)
    try:
        ok = run_demo(
            settings,
            url=url or f"http://127.0.0.1:{settings.web_port}",
            calls=calls,
            timeout=timeout,
        )
    except CallvaultError as exc:
        fail(str(exc))
    sys.exit(0 if ok else 1)
