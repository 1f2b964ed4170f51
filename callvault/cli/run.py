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

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError
from callvault.settings import Settings

if TYPE_CHECKING:
    from callvault.broker import EmbeddedBroker
    from callvault.services import Services

__all__ = ["up", "worker", "demo", "broker_url", "BROKER_BUCKET"]

#: The bucket of the embedded S3 server that holds the embedded broker's topics.
BROKER_BUCKET = "callvault-broker"


def broker_url(settings: Settings) -> str:
    """The broker a worker (or ``dlq replay``) talks to: CALLVAULT_BROKER, or the
    embedded broker's port."""
    return settings.broker or f"kafka://127.0.0.1:{settings.embedded_broker_port}"


def _start(settings: Settings) -> tuple[Services, socket.socket]:
    """Open the services (settings, policy and backends are checked first), then bind
    the web port: a taken or invalid port is one line and exit 2, before anything runs.

    Raises:
        CallvaultError: a configuration, backend or bind error.
    """
    from callvault.services import build_services
    from streams.app import bind_web

    services = build_services(settings)
    try:
        return services, bind_web(settings.web_host, settings.web_port)
    except BaseException:
        services.close()
        raise


def _run_worker(services: Services, broker_url: str, web_socket: socket.socket) -> int:
    """Run a worker until it stops; its exit status (non-zero when it crashed)."""
    from streams.app import Worker

    try:
        return Worker(services, broker_url=broker_url, web_socket=web_socket).run()
    finally:
        services.close()
        web_socket.close()


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """Every file and folder a worker creates is 0600 / 0700, whatever the caller's umask
    (the catalog, exports, logs; storage sets modes explicitly as well). The umask is
    restored afterwards (tests run these commands in-process)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@click.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start the embedded default: S3 server (SeaweedFS) and tansu broker keeping its
    topics on it, one worker, web server (Ctrl-C stops all)."""
    settings = settings_of(ctx)
    with _private_files():
        code = _up(settings)
    if code:
        fail(f"the worker stopped with status {code} (see the log above)", code)


def _up(settings: Settings) -> int:
    try:
        services, web_socket = _start(settings)
        if settings.broker:
            click.echo(f"using the broker at {settings.broker} (CALLVAULT_BROKER)")
            code = _run_worker(services, settings.broker, web_socket)
        else:
            try:
                with ExitStack() as children:  # stopped in reverse: broker, then S3 server
                    broker = children.enter_context(_embedded_broker(settings, children))
                    click.echo(
                        f"callvault up: broker {broker.url} (topics {_where_topics(settings)}), "
                        f"web http://{settings.web_host}:{settings.web_port}, "
                        f"state in {settings.data_dir}\n"
                        "  try `callvault demo` in another shell; Ctrl-C stops everything"
                    )
                    code = _run_worker(services, broker.url, web_socket)
            finally:  # also when the S3 server or the broker does not start
                services.close()
                web_socket.close()
    except CallvaultError as exc:
        fail(str(exc))
    return code


def _where_topics(settings: Settings) -> str:
    if settings.embedded_broker_storage == "memory":
        return "in memory"
    return f"on the embedded S3 server, {settings.data_dir / 's3'}"


def _embedded_broker(settings: Settings, children: ExitStack) -> EmbeddedBroker:
    """The embedded broker, on the embedded S3 server unless its storage is memory
    (the S3 server is entered into ``children`` first, so it stops last).

    Raises:
        EmbeddedServerError: the S3 server did not start or refused the bucket.
    """
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
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes on this host: N consumers of one consumer group (at most "
    "CALLVAULT_PARTITIONS get work) sharing the web port; the retention sweep, the "
    "reconciler and key rotation still run in one at a time (catalog leases).",
)
@click.pass_context
def worker(ctx: click.Context, processes: int) -> None:
    """Run a worker (or N processes of one) against CALLVAULT_BROKER (or the embedded
    broker's port)."""
    settings = settings_of(ctx)
    try:
        with _private_files():
            services, web_socket = _start(settings)
            if processes == 1:
                code = _run_worker(services, broker_url(settings), web_socket)
            else:
                code = _run_processes(settings, processes, services, web_socket)
    except CallvaultError as exc:
        fail(str(exc))
    if code:
        fail(f"the worker stopped with status {code} (see the log above)", code)


def _run_processes(
    settings: Settings, processes: int, checked: Services, web_socket: socket.socket
) -> int:
    """Fork ``processes`` workers sharing ``web_socket`` (the backends were checked by
    opening ``checked``; each child opens its own)."""
    from callvault.services import build_services
    from callvault.workers import run_worker_processes

    checked.close()  # no connection may be shared across the fork
    if processes > settings.partitions:
        click.echo(
            f"warning: {processes} processes but {settings.partitions} partitions "
            "(CALLVAULT_PARTITIONS): some processes will get no ingest work",
            err=True,
        )

    def run_one(mine: Settings, sock: socket.socket) -> int:
        return _run_worker(build_services(mine), broker_url(mine), sock)

    try:
        return run_worker_processes(settings, processes, web_socket, run_one)
    finally:
        web_socket.close()


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
