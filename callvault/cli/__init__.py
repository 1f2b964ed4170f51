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

import importlib
import logging
from pathlib import Path

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


def main() -> None:
    cli(prog_name="callvault")
