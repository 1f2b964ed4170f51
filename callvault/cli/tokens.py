"""Bearer tokens for the HTTP API."""

from __future__ import annotations

import click

from callvault.cli._common import fail, settings_of
from callvault.errors import CallvaultError

__all__ = ["token"]


@click.group()
def token() -> None:
    """Bearer tokens for the HTTP API."""


@token.command("issue")
@click.option("--user", required=True, help="Who the token is for (user id).")
@click.option(
    "--role", required=True, help="Role, e.g. qa-reviewer, compliance-officer, telephony."
)
@click.option("--org", default=None, help="Organisation (required for qa-vendor).")
@click.option(
    "--tenant",
    default=None,
    help="Tenant the token acts in (default: the policy's tenancy.default_tenant); "
    "'*' for every tenant, only for a role the policy lets span tenants (operator).",
)
@click.option("--ttl", default="8h", show_default=True, help="Lifetime: 30m, 8h, 2d (max 30d).")
@click.pass_context
def token_issue(
    ctx: click.Context, user: str, role: str, org: str | None, tenant: str | None, ttl: str
) -> None:
    """Print a signed, expiring bearer token.

    \b
    Examples:
      callvault token issue --user pbx-1 --role telephony --tenant acme --ttl 1h
      callvault token issue --user cora --role compliance-officer --tenant globex
      callvault token issue --user otto --role operator --tenant '*'
    """
    from callvault.services import keyring_for
    from policies import load_policy
    from streams.http.auth import local_tokens, parse_ttl

    settings = settings_of(ctx)
    try:
        policy = load_policy(settings.policy)
        keyring = keyring_for(settings)
        tokens = local_tokens(keyring, policy)
        click.echo(
            tokens.issue(user=user, role=role, org=org, ttl=parse_ttl(ttl), tenant=tenant or None)
        )
    except ValueError as exc:
        fail(str(exc))
    except CallvaultError as exc:
        fail(str(exc))
