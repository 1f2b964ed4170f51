"""Running callvault: the embedded default, a worker, the demo."""

from __future__ import annotations

import sys

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError
from callvault.settings import Settings

__all__ = ["up", "worker", "demo"]


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


@click.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start the embedded default: tansu broker, one worker, web server (Ctrl-C stops all)."""
    from callvault.broker import EmbeddedBroker

    settings = settings_of(ctx)
    try:
        if settings.broker:
            click.echo(f"using the broker at {settings.broker} (CALLVAULT_BROKER)")
            _run_worker(settings, settings.broker)
            return
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        broker = EmbeddedBroker(
            settings.embedded_broker_port, log_file=settings.data_dir / "broker.log"
        )
        with broker:
            click.echo(
                f"callvault up: broker {broker.url}, "
                f"web http://{settings.web_host}:{settings.web_port}, "
                f"state in {settings.data_dir}\n"
                "  try `callvault demo` in another shell; Ctrl-C stops everything"
            )
            _run_worker(settings, broker.url)
    except CallvaultError as exc:
        fail(str(exc))


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
