"""The ``callvault`` command line.

    callvault up                 embedded broker + worker + web server (make run)
    callvault worker             a worker against CALLVAULT_BROKER
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
    callvault import PATH --manifest FILE   backfill an archive through the ingest pipeline

Every command exits 0 on success, 1 when the thing checked is bad (invalid policy,
broken audit chain), 2 on usage or configuration errors.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from callvault.errors import CallvaultError, ConfigError
from callvault.settings import ENV_PREFIX, FIELDS, Settings, load_settings

__all__ = ["main", "cli"]


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


def _fail(message: str, code: int = 2) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


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
        _fail(str(exc))
    level = ctx.obj.log_level.upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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


@cli.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start the embedded default: tansu broker, one worker, web server (Ctrl-C stops all)."""
    from callvault.broker import EmbeddedBroker

    settings = _settings(ctx)
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
        _fail(str(exc))


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run one worker against CALLVAULT_BROKER (or the embedded broker's port)."""
    settings = _settings(ctx)
    try:
        _run_worker(settings, _broker_url(settings))
    except CallvaultError as exc:
        _fail(str(exc))


@cli.command()
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

    settings = _settings(ctx)
    try:
        ok = run_demo(
            settings,
            url=url or f"http://127.0.0.1:{settings.web_port}",
            calls=calls,
            timeout=timeout,
        )
    except CallvaultError as exc:
        _fail(str(exc))
    sys.exit(0 if ok else 1)


@cli.group()
def token() -> None:
    """Bearer tokens for the HTTP API."""


@token.command("issue")
@click.option("--user", required=True, help="Who the token is for (user id).")
@click.option(
    "--role", required=True, help="Role, e.g. qa-reviewer, compliance-officer, telephony."
)
@click.option("--org", default=None, help="Organisation (required for qa-vendor).")
@click.option("--ttl", default="8h", show_default=True, help="Lifetime: 30m, 8h, 2d (max 30d).")
@click.pass_context
def token_issue(ctx: click.Context, user: str, role: str, org: str | None, ttl: str) -> None:
    """Print a signed, expiring bearer token."""
    from callvault.services import keyring_for
    from policies import load_policy
    from streams.auth import LocalTokens, parse_ttl

    settings = _settings(ctx)
    try:
        policy = load_policy(settings.policy)
        keyring = keyring_for(settings)
        tokens = LocalTokens(keyring, frozenset(policy.roles))
        click.echo(tokens.issue(user=user, role=role, org=org, ttl=parse_ttl(ttl)))
    except ValueError as exc:
        _fail(str(exc))
    except CallvaultError as exc:
        _fail(str(exc))


@cli.group()
def policy() -> None:
    """The policy file: purposes, roles, retention, clauses."""


@policy.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def policy_check(ctx: click.Context, path: Path | None) -> None:
    """Validate the policy file (default: CALLVAULT_POLICY or the shipped policy)."""
    from policies import check_policy

    target = path or _settings(ctx).policy
    problems = check_policy(target)
    name = str(target) if target else "the shipped policy"
    if problems:
        click.secho(f"{name}: {len(problems)} problem(s)", fg="red", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    click.echo(f"{name}: ok")


@policy.command("clauses")
@click.pass_context
def policy_clauses(ctx: click.Context) -> None:
    """Every privacy-policy clause with the rules, mechanism and tests that enforce it."""
    from policies import clause_report, load_policy

    try:
        report = clause_report(load_policy(_settings(ctx).policy))
    except CallvaultError as exc:
        _fail(str(exc))
    uncovered = 0
    for item in report:
        click.secho(f"[{item.clause_id}] {item.title}", bold=True)
        click.echo(f"  text:      {item.excerpt}")
        if item.organizational:
            click.echo(f"  organizational: {item.mechanism}")
        else:
            click.echo(f"  mechanism: {item.mechanism}")
            click.echo(f"  rules:     {', '.join(item.rules) or '-'}")
            click.echo(f"  tests:     {', '.join(item.tests) or '-'}")
        if not item.covered:
            uncovered += 1
            click.secho("  NOT COVERED", fg="red")
        click.echo()
    sys.exit(1 if uncovered else 0)


@cli.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Recompute the hash chain; name the first broken record if any."""
    from tqdm import tqdm

    from storage.catalog import open_catalog

    settings = _settings(ctx)
    try:
        catalog = open_catalog(settings.catalog)
        log = catalog.audit
        head = log.head()
        total = head.seq if head else 0
        with tqdm(
            total=total, unit="rec", desc="verifying", disable=total < 1000, file=sys.stderr
        ) as bar:
            result = log.verify(progress=lambda done: bar.update(done - bar.n))
    except CallvaultError as exc:
        _fail(str(exc))
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} records verified")
        return
    click.secho(
        f"audit chain BROKEN at record {result.first_broken_seq}: {result.problem} "
        f"({result.checked} records checked)",
        fg="red",
    )
    sys.exit(1)


@cli.group()
def config() -> None:
    """Settings."""


@config.command("reference")
def config_reference() -> None:
    """Print the table of CALLVAULT_* variables (Markdown), as in README.md."""
    click.echo(config_table())


def config_table() -> str:
    lines = ["| variable | default | example | meaning |", "| --- | --- | --- | --- |"]
    for field in FIELDS:
        meta = field.metadata
        lines.append(
            f"| `{ENV_PREFIX}{field.name.upper()}` | {meta['default_doc']} "
            f"| `{meta['example']}` | {meta['help']} |"
        )
    lines.append(
        f"| `{ENV_PREFIX}CONFIG` | (none) | `/etc/callvault/callvault.toml` "
        "| TOML file with any of the settings above (lower-case keys); the environment wins. |"
    )
    return "\n".join(lines)


def _register_commands() -> None:
    from callvault.backfill import import_command
    from callvault.keyadmin import keys

    cli.add_command(keys)
    cli.add_command(import_command)


_register_commands()


def _add_lifecycle_commands() -> None:
    from callvault.lifecycle_cli import hold, privacy, retention

    for command in (retention, hold, privacy):
        cli.add_command(command)


_add_lifecycle_commands()


def main() -> None:
    cli(prog_name="callvault")


if __name__ == "__main__":  # pragma: no cover
    main()
