"""Quality evaluations: sampling plans, assignments, scores per agent or queue.

callvault qa sample PLAN --reviewer R [--reviewer R2 ...] [--period 2026-W48] [--tenant T]
callvault qa assignments [--status open|completed|cancelled] [--reviewer R]
callvault qa summary [--by agent|queue] [--plan PLAN]
"""

from __future__ import annotations

import click

from callvault.cli._common import echo_json, fail, open_services, settings_of
from callvault.errors import CallvaultError

__all__ = ["qa"]


@click.group()
def qa() -> None:
    """Quality evaluations: run sampling plans, list assignments, read score summaries."""


@qa.command("sample")
@click.argument("plan")
@click.option("--reviewer", "reviewers", multiple=True, help="A reviewer's user id (repeat).")
@click.option(
    "--period",
    default=None,
    help="2026-11-25, 2026-W48 or 2026-11 (default: the last complete one).",
)
@click.option("--tenant", default=None, help="Only this tenant's recordings.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.pass_context
def qa_sample(
    ctx: click.Context,
    plan: str,
    reviewers: tuple[str, ...],
    period: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Run sampling plan PLAN: assign its calls of one period to reviewers.

    Only recordings tagged with the plan's purpose, stored, not restricted, not
    awaiting an erasure held back by a legal hold (and inside an entrusted vendor's
    contract) are sampled. Running it again tops up, never assigns a call twice.

    \b
    Example:
      callvault qa sample weekly-per-agent --reviewer rita --reviewer sso:alice
    """
    from streams.evaluations import EvaluationService

    actor = f"cli:{settings_of(ctx).worker_id}"
    with open_services(ctx) as services:
        try:
            run = EvaluationService(services).run_plan(
                plan, actor=actor, period=period, reviewers=list(reviewers) or None, tenant=tenant
            )
        except (CallvaultError, ValueError) as exc:
            fail(str(exc))
        now = services.clock()
    if as_json:
        echo_json(run.to_json(now))
        return
    click.echo(
        f"{run.plan_id} {run.period}: {len(run.assigned)} assigned, {run.already} already, "
        f"{run.candidates} recording(s) in the period"
    )
    for reason, count in sorted(run.excluded.items()):
        click.echo(f"  not sampled: {count} {reason}")
    for item in run.assigned:
        due = f"{item.due_at:%Y-%m-%d}"
        click.echo(f"  {item.assignment_id}  {item.recording_id}  -> {item.reviewer}  due {due}")


@qa.command("assignments")
@click.option("--status", type=click.Choice(["open", "completed", "cancelled"]), default=None)
@click.option("--reviewer", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def qa_assignments(
    ctx: click.Context, status: str | None, reviewer: str | None, as_json: bool
) -> None:
    """Evaluation assignments, soonest due first."""
    with open_services(ctx) as services:
        found = services.evaluations.list_assignments(
            reviewer=reviewer, statuses=None if status is None else [status], limit=1000
        )
        now = services.clock()
    if as_json:
        echo_json([a.to_json(now) for a in found])
        return
    for a in found:
        late = " OVERDUE" if a.overdue(now) else ""
        click.echo(
            f"{a.assignment_id}  {a.status.value:9}  {a.recording_id}  {a.reviewer}  "
            f"due {a.due_at:%Y-%m-%d}{late}"
        )
    click.echo(f"{len(found)} assignment(s)")


@qa.command("summary")
@click.option("--by", type=click.Choice(["agent", "queue"]), default="agent")
@click.option("--plan", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def qa_summary(ctx: click.Context, by: str, plan: str | None, as_json: bool) -> None:
    """Completed evaluations' scores per agent or queue."""
    from streams.evaluations import EvaluationService

    with open_services(ctx) as services:
        groups = EvaluationService(services).summary(by=by, plan_id=plan)
    if as_json:
        echo_json(groups)
        return
    for g in groups:
        passed = "-" if g["pass_rate"] is None else f"{100 * g['pass_rate']:.0f}%"
        click.echo(
            f"{g['tenant']}/{g[by]}: {g['evaluations']} evaluation(s), mean {g['mean']}, "
            f"min {g['min']}, max {g['max']}, passed {passed}"
        )
