"""What every command module shares: the settings, failing, JSON output, services."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from callvault.errors import CallvaultError
from callvault.settings import Settings

__all__ = ["settings_of", "fail", "echo_json", "open_services", "open_endoflife"]


def settings_of(ctx: click.Context) -> Settings:
    """The settings the ``callvault`` group loaded."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr (one line) and exit with ``code``."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@contextmanager
def open_services(ctx: click.Context) -> Iterator[Any]:
    """The services the settings name (exit 2 with one line if they cannot be opened)."""
    from callvault.services import build_services

    try:
        services = build_services(settings_of(ctx))
    except CallvaultError as exc:
        fail(str(exc))
    try:
        yield services
    finally:
        services.close()


@contextmanager
def open_endoflife(ctx: click.Context, actor: str | None = None) -> Iterator[Any]:
    """Retention, holds and privacy requests over the services (as the worker runs them)."""
    from streams.endoflife import EndOfLife

    settings = settings_of(ctx)
    with open_services(ctx) as services:
        yield EndOfLife.from_services(services, actor=actor or f"cli:{settings.worker_id}")
