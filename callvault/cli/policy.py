"""The policy file: check it, show what enforces each clause."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """The policy file: purposes, roles, retention, clauses."""


@policy.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def policy_check(ctx: click.Context, path: Path | None) -> None:
    """Validate the policy file (default: CALLVAULT_POLICY or the shipped policy)."""
    from policies import check_policy, load_policy
    from streams.http.oidc import SsoConfig

    target = path or settings_of(ctx).policy
    problems = [str(p) for p in check_policy(target)]
    name = str(target) if target else "the shipped policy"
    if not problems:
        sso = load_policy(target).sso
        try:
            if sso is not None:
                SsoConfig.from_mapping(sso)
        except ValueError as exc:
            problems.append(f"{name}: sso: {exc}")
    if problems:
        click.secho(f"{name}: {len(problems)} problem(s)", fg="red", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    click.echo(f"{name}: ok")


@policy.command("clauses")
@click.pass_context
def policy_clauses(ctx: click.Context) -> None:
    """Every privacy-policy clause: its status, text, mechanism, rules and the tests
    that exercise its wording (one per line).

    \b
    Status: enforced (a mechanism with tests), untested (a mechanism without tests),
    organizational, NOT COVERED. Each listed test carries @pytest.mark.clause("<id>").
    Exit 1 when a clause is not covered.
    """
    from policies import clause_report, load_policy

    try:
        report = clause_report(load_policy(settings_of(ctx).policy))
    except CallvaultError as exc:
        fail(str(exc))
    uncovered = 0
    for item in report:
        click.secho(f"[{item.clause_id}] {item.title} ({item.status})", bold=True)
        click.echo(f"  text:      {item.excerpt}")
        if item.organizational:
            click.echo(f"  organizational: {item.mechanism}")
        else:
            click.echo(f"  mechanism: {item.mechanism}")
            click.echo(f"  rules:     {', '.join(item.rules) or '-'}")
            click.echo(f"  tests:     {len(item.tests) or 'none'}")
            for test in item.tests:
                click.echo(f"    {test}")
        if not item.covered:
            uncovered += 1
            click.secho("  NOT COVERED", fg="red")
        click.echo()
    counts: dict[str, int] = {}
    for item in report:
        counts[item.status] = counts.get(item.status, 0) + 1
    click.echo(
        f"{len(report)} clauses: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    sys.exit(1 if uncovered else 0)
