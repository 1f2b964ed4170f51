"""The ``callvault`` command line: one module per command group.

    callvault up                 embedded S3 server, broker on it, worker, web (make run)
    callvault worker [--processes N]   a worker (N consumer processes) against CALLVAULT_BROKER
    callvault demo               push synthetic calls through a running system
    callvault token issue        sign a bearer token
    callvault policy check       validate the policy file
    callvault policy clauses     privacy-policy clause -> rules, mechanism, tests
    callvault audit verify       prove the audit chain intact
    callvault retention sweep    delete what is due (also: reschedule, receipt verify|show)
    callvault hold place|release|list   legal holds
    callvault privacy submit|status     customers' privacy requests
    callvault config reference   the CALLVAULT_* table (README)
    callvault keys rotate|status master key rotation (rewraps subject keys), key status
    callvault import PATH --manifest FILE [--workers N]   backfill an archive (N processes)
    callvault qa sample|assignments|summary quality evaluations (sampling plans, scores)
    callvault announce FILE [--leg FILE --role R]...   a PBX's end-of-recording hook
    callvault dlq list|show|replay   dead letters: what ingest refused (sealed), replay it
    callvault ref RECORDING_ID   the keyed reference logs and DLQ headers use for an id
    callvault vault check [--repair]        orphan objects, recordings without their object
    callvault vault sync [--all]            vault tags and S3 legal holds from the catalog

Every command exits 0 on success, 1 when the thing checked is bad (invalid policy,
broken audit chain), 2 on usage or configuration errors. Adding a command group:
write ``callvault/cli/<group>.py`` with a ``click`` group and add it to
:data:`COMMANDS`.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from pathlib import Path
from typing import Any

import click

from callvault.cli._common import fail
from callvault.errors import ConfigError
from callvault.settings import load_settings

__all__ = ["main", "cli", "COMMANDS"]

#: ``module:command`` of every top-level command, in ``--help`` order.
COMMANDS = (
    "callvault.cli.run:up",
    "callvault.cli.run:worker",
    "callvault.cli.run:demo",
    "callvault.cli.tokens:token",
    "callvault.cli.policy:policy",
    "callvault.cli.audit:audit",
    "callvault.cli.retention:retention",
    "callvault.cli.holds:hold",
    "callvault.cli.privacy:privacy",
    "callvault.cli.config:config",
    "callvault.cli.keys:keys",
    "callvault.cli.imports:import_command",
    "callvault.cli.qa:qa",
    "callvault.cli.announce:announce_command",
    "callvault.cli.dlq:dlq",
    "callvault.cli.ref:ref",
    "callvault.cli.vault:vault",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", type=click.Path(dir_okay=False, path_type=Path), help="TOML settings file."
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """callvault: call recordings that are purpose-bound, encrypted, audited and deleted on time.

    Settings come from CALLVAULT_* environment variables (see `callvault config reference`).
    """
    try:
        ctx.obj = load_settings(config_file=config)
    except ConfigError as exc:
        fail(str(exc))
    level = ctx.obj.log_level.upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _target in COMMANDS:
    _module, _, _name = _target.partition(":")
    cli.add_command(getattr(importlib.import_module(_module), _name))

_UNDECODABLE = re.compile(r"[\ud800-\udfff]")


def _refuse_undecodable_text(command: click.Command) -> None:
    """Wrap the callback of ``command`` (and of every subcommand) so that a text option
    or argument holding bytes that are not UTF-8 (Python reads them as lone surrogates,
    which no database, JSON or audit record can hold) is a usage error, exit 2, before
    anything runs. File paths (``click.Path``) may hold such bytes and are let through."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _refuse_undecodable_text(sub)
    texts = [p for p in command.params if type(p.type) is click.types.StringParamType]
    callback = command.callback
    if not texts or callback is None:
        return

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for param in texts:
            value = kwargs.get(param.name or "")
            for item in value if isinstance(value, tuple | list) else (value,):
                if isinstance(item, str) and _UNDECODABLE.search(item):
                    raise click.BadParameter("holds bytes that are not UTF-8 text", param=param)
        return callback(*args, **kwargs)

    command.callback = checked


_refuse_undecodable_text(cli)


def main() -> None:
    cli(prog_name="callvault")
