"""Running callvault: the embedded default, a worker, the demo."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError
from callvault.settings import Settings

if TYPE_CHECKING:
    from callvault.services import Services

__all__ = ["up", "worker", "demo", "broker_url"]


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
    """Start the embedded default: tansu broker, one worker, web server (Ctrl-C stops all)."""
    settings = settings_of(ctx)
    with _private_files():
        code = _up(settings)
    if code:
        fail(f"the worker stopped with status {code} (see the log above)", code)


def _up(settings: Settings) -> int:
    from callvault.broker import EmbeddedBroker

    try:
        services, web_socket = _start(settings)
        if settings.broker:
            click.echo(f"using the broker at {settings.broker} (CALLVAULT_BROKER)")
            code = _run_worker(services, settings.broker, web_socket)
        else:
            broker = EmbeddedBroker(
                settings.embedded_broker_port, log_file=settings.data_dir / "broker.log"
            )
            try:
                with broker:
                    click.echo(
                        f"callvault up: broker {broker.url}, "
                        f"web http://{settings.web_host}:{settings.web_port}, "
                        f"state in {settings.data_dir}\n"
                        "  try `callvault demo` in another shell; Ctrl-C stops everything"
                    )
                    code = _run_worker(services, broker.url, web_socket)
            finally:  # also when the broker does not start
                services.close()
                web_socket.close()
    except CallvaultError as exc:
        fail(str(exc))
    return code


@click.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run one worker against CALLVAULT_BROKER (or the embedded broker's port)."""
    settings = settings_of(ctx)
    try:
        with _private_files():
            services, web_socket = _start(settings)
            code = _run_worker(services, broker_url(settings), web_socket)
    except CallvaultError as exc:
        fail(str(exc))
    if code:
        fail(f"the worker stopped with status {code} (see the log above)", code)


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
