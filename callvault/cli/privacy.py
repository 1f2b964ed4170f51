"""Customers' privacy requests: the privacy office's workflow on the command line.

callvault privacy submit FILE --by USER [--json]
callvault privacy list [--status S] [--tenant T] [--overdue] [--json]
callvault privacy show REQUEST_ID [--json]
callvault privacy verify REQUEST_ID --method M --by USER [--verified-by USER]
callvault privacy approve REQUEST_ID --by USER [--json]
callvault privacy refuse REQUEST_ID --reason R --note TEXT --by USER [--json]
callvault privacy status REQUEST_ID          (the JSON of ``show``; kept for scripts)

Human-readable by default, ``--json`` for scripts. Exit 0: done; 1: the request does
not exist, or the step is not allowed in its status (``wrong-status``); 2: a malformed
request or option, a note that looks like personal data, or the catalog cannot be
opened.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from callvault.cli._common import echo_json, fail, open_endoflife
from callvault.errors import CallvaultError, InputFileError
from callvault.inputfiles import read_input_file
from policies.model import RefusalReason

__all__ = ["privacy"]

_REQUEST_FORMAT = """\b
A request file is one JSON object:
  {"type": "erase", "tenant": "acme", "customer_ref": "C-1001",
   "request_id": "PR-2026-0042",
   "identity_verification": {"verified_by": "officer-7", "method": "id-document"},
   "received_at": "2026-11-20T08:55:00+00:00", "approve": true}
type: disclose, restrict, lift-restriction, erase, correct (+ "corrections"),
contract-terminated (+ "terminated_at"). Without identity_verification the request
waits "received" (then: verify, approve or refuse); with it, it is approved by you
and carried out at once, unless "approve": false."""


@click.group()
def privacy() -> None:
    """Customers' privacy requests: file, list, show, verify, approve, refuse.

    \b
    The workflow: received -> verified -> approved | refused -> executing ->
    completed (or held: a legal hold keeps some recordings). Each request kind is
    due within its SLA (policy privacy_requests.sla_days); list shows overdue first.
    """


def _when(value: str | None) -> str:
    return "-" if value is None else value[:16].replace("T", " ")


def _status_of(body: dict[str, Any]) -> str:
    status = str(body["status"])
    if body.get("overdue"):
        status += " OVERDUE"
    return status


def _echo_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("no privacy requests")
        return
    click.echo(f"{'request':<24} {'type':<19} {'tenant':<10} {'status':<18} {'received':<16} due")
    for row in rows:
        click.echo(
            f"{row['request_id']:<24} {row['type']:<19} {row['tenant']:<10} "
            f"{_status_of(row):<18} {_when(row['received_at']):<16} {_when(row['due_at'])}"
        )


def _echo_request(body: dict[str, Any]) -> None:
    lines = [
        f"request    {body['request_id']} ({body['type']}, tenant {body['tenant']})",
        f"status     {_status_of(body)}",
        f"due        {_when(body['due_at'])} (SLA {body.get('sla_days', '?')} days)",
        f"customer   {body['subject_ref'][:16]}... (pseudonym)",
    ]
    decision = body.get("decision")
    if decision and decision["outcome"] == "refused":
        lines.append(f"refused    {decision['reason']}: {decision['note']}")
    click.echo("\n".join(lines))
    click.echo("timeline")
    for step in body.get("timeline", []):
        by = f" by {step['by']}" if step.get("by") else ""
        click.echo(f"  {step['step']:<10} {_when(step['at'])}{by}")
    if body.get("progress"):
        progress = ", ".join(f"{k} {v}" for k, v in sorted(body["progress"].items()))
        click.echo(f"progress   {progress}")
    result = body.get("result") or {}
    if result.get("summary"):
        click.echo(f"result     {result['summary']}")
    for item in result.get("withheld", []):
        note = f" ({item['note']})" if item.get("note") else ""
        click.echo(f"  withheld {item['recording_id']}: {item['reason']}{note}")


def _answer(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(body)
    else:
        _echo_request(body)


def _json_of(lifecycle: Any, found: Any) -> dict[str, Any]:
    body: dict[str, Any] = found.to_json(lifecycle.services.clock())
    body["sla_days"] = lifecycle.services.policy.request_days(found.kind)
    return body


def _step(ctx: click.Context, actor: str, as_json: bool, run: Any) -> None:
    """Run one workflow step and print the request it leaves (exit 1/2 as documented)."""
    from storage.errors import AuditError, PrivacyRequestNotFound
    from streams.privacy import PrivacyRequestRejected

    with open_endoflife(ctx, actor=actor) as lifecycle:
        try:
            done = run(lifecycle.privacy)
        except PrivacyRequestNotFound as exc:
            fail(str(exc), 1)
        except AuditError as exc:  # a note or reason that looks like personal data
            fail(f"personal-data: {exc}")
        except PrivacyRequestRejected as exc:
            fail(f"{exc.reason}: {exc.detail}", 1 if exc.reason == "wrong-status" else 2)
        except CallvaultError as exc:
            fail(str(exc), 1)
        _answer(_json_of(lifecycle, done), as_json)


_JSON = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")


@privacy.command("submit", epilog=_REQUEST_FORMAT)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--by", "requested_by", required=True, help="Who files it (compliance officer's user id)."
)
@_JSON
@click.pass_context
def privacy_submit(ctx: click.Context, path: Path, requested_by: str, as_json: bool) -> None:
    """File a privacy request from a JSON file (format below).

    \b
    Examples:
      callvault privacy submit erase-c1001.json --by officer-7
      callvault privacy submit disclose.json --by officer-7 --json
    """
    try:  # the request's own bound (256 KiB) is checked by submit, with its reason code
        text = read_input_file(path, max_bytes=1 << 20, what="request file")
    except InputFileError as exc:
        fail(str(exc))
    _step(
        ctx,
        f"user:{requested_by}",
        as_json,
        lambda privacy: privacy.submit(text, requested_by=requested_by),
    )


@privacy.command("list")
@click.option("--status", default=None, help="Only this status (received, verified, ...).")
@click.option("--tenant", default=None, help="Only this tenant's requests.")
@click.option("--overdue", is_flag=True, help="Only open requests past their due date.")
@click.option(
    "--limit", default=200, show_default=True, type=click.IntRange(1, 10_000),
    help="Requests per page; past it, the cursor of the next page is printed.",
)  # fmt: skip
@click.option("--after", default=None, metavar="CURSOR", help="The page after this cursor.")
@_JSON
@click.pass_context
def privacy_list(
    ctx: click.Context,
    status: str | None,
    tenant: str | None,
    overdue: bool,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """Privacy requests: open ones first (overdue leading), then by due date, a page of
    --limit at a time; when more follow, the page ends with their cursor ("more:
    --after CURSOR"; "next" with --json).

    \b
    Examples:
      callvault privacy list
      callvault privacy list --status verified --tenant acme
      callvault privacy list --overdue --json
    """
    from storage.catalog import RequestStatus

    try:
        statuses = None if status is None else (RequestStatus(status),)
    except ValueError:
        fail(f"unknown status {status!r} (known: {', '.join(RequestStatus)})")
    with open_endoflife(ctx) as lifecycle:
        now: datetime = lifecycle.services.clock()
        try:
            found, following = lifecycle.services.requests.page_requests(
                statuses=statuses, tenant=tenant, limit=limit, after=after
            )
        except CallvaultError as exc:
            fail(str(exc))
        if overdue and not all(r.overdue(now) for r in found):
            following = None  # the overdue lead the order: none follow the first other
        rows = [_json_of(lifecycle, r) for r in found if not overdue or r.overdue(now)]
    if as_json:
        echo_json({"requests": rows, "next": following})
    else:
        _echo_table(rows)
        if following is not None:
            click.echo(f"more: --after {following}")


@privacy.command("show")
@click.argument("request_id")
@_JSON
@click.pass_context
def privacy_show(ctx: click.Context, request_id: str, as_json: bool) -> None:
    """One request: status, SLA, timeline (who did what when), progress, result.

    \b
    Examples:
      callvault privacy show PR-2026-0042
      callvault privacy show PR-2026-0042 --json | jq .timeline
    """
    _step(ctx, "cli:privacy", as_json, lambda privacy: privacy.get(request_id))


@privacy.command("status")
@click.argument("request_id")
@click.pass_context
def privacy_status(ctx: click.Context, request_id: str) -> None:
    """The JSON of ``show`` (kept for scripts written before ``show``)."""
    _step(ctx, "cli:privacy", True, lambda privacy: privacy.get(request_id))


@privacy.command("verify")
@click.argument("request_id")
@click.option(
    "--method",
    required=True,
    help="How the identity was verified: id-document, account-authentication, callback, "
    "in-person, postal.",
)
@click.option("--by", "by", required=True, help="Who records it (your user id).")
@click.option("--verified-by", default=None, help="Who verified it (default: --by).")
@_JSON
@click.pass_context
def privacy_verify(
    ctx: click.Context,
    request_id: str,
    method: str,
    by: str,
    verified_by: str | None,
    as_json: bool,
) -> None:
    """Record that the customer's identity was verified (received -> verified).

    \b
    Examples:
      callvault privacy verify PR-2026-0042 --method id-document --by officer-7
    """
    identity = {"verified_by": verified_by or by, "method": method}
    _step(ctx, f"user:{by}", as_json, lambda privacy: privacy.verify(request_id, identity, by=by))


@privacy.command("approve")
@click.argument("request_id")
@click.option("--by", "by", required=True, help="Who approves it (your user id).")
@_JSON
@click.pass_context
def privacy_approve(ctx: click.Context, request_id: str, by: str, as_json: bool) -> None:
    """Approve a verified request and carry it out (-> executing -> completed or held).

    \b
    Examples:
      callvault privacy approve PR-2026-0042 --by officer-7
    """
    _step(ctx, f"user:{by}", as_json, lambda privacy: privacy.approve(request_id, by=by))


@privacy.command("refuse")
@click.argument("request_id")
@click.option(
    "--reason",
    required=True,
    type=click.Choice([reason.value for reason in RefusalReason]),
    help="The policy's reasonable basis to refuse.",
)
@click.option("--note", required=True, help="Why, in a sentence (no personal data).")
@click.option("--by", "by", required=True, help="Who refuses it (your user id).")
@_JSON
@click.pass_context
def privacy_refuse(
    ctx: click.Context, request_id: str, reason: str, note: str, by: str, as_json: bool
) -> None:
    """Refuse a request that is not approved yet, for a closed reason with a note.

    \b
    Examples:
      callvault privacy refuse PR-2026-0042 --reason identity-unverified \\
          --note "caller could not answer the security questions" --by officer-7
      callvault privacy refuse PR-2026-0043 --reason legal-hold --note "case 2026-17" --by officer-7
    """
    _step(
        ctx,
        f"user:{by}",
        as_json,
        lambda privacy: privacy.refuse(request_id, by=by, reason=reason, note=note),
    )
