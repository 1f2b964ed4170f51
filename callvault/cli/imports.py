"""``callvault import``: bring an existing archive under governance (a progress bar,
a summary, a JSON-lines report)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import IO, Any

import click

from callvault.errors import CallvaultError, ConfigError
from streams.backfill import (
    DEFAULT_BATCH_SIZE,
    STATUSES,
    ImportSummary,
    RowOutcome,
    archive_root,
    read_manifest,
    run_import,
    run_import_workers,
)

__all__ = ["import_command", "format_summary"]


def _write_report(handle: IO[str] | None, outcome: RowOutcome) -> None:
    if handle is not None:
        handle.write(outcome.to_json() + "\n")
        handle.flush()


def format_summary(summary: ImportSummary, source: str) -> str:
    seconds = max(summary.seconds, 1e-9)
    stored = summary.by_status["stored"]
    lines = [
        f"imported {summary.rows} manifest row(s) from {source} in {summary.seconds:.1f} s "
        f"({stored / seconds:.1f} files/s, {summary.bytes_in / seconds / 1e6:.1f} MB/s stored)"
    ]
    for status in STATUSES:
        line = f"  {status:<10}{summary.by_status[status]:>8}"
        reasons = (
            summary.failed_by_reason
            if status == "failed"
            else summary.skipped_by_reason
            if status == "skipped"
            else None
        )
        if reasons:
            line += (
                "  (" + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) + ")"
            )
        lines.append(line)
    return "\n".join(lines)


def _import_cli(
    settings: Any,
    source: str,
    manifest: Path,
    report: Path | None,
    move: bool,
    retry_failed: bool,
    batch_size: int,
    workers: int = 1,
) -> int:
    import sys

    import click
    from tqdm import tqdm

    from callvault.services import build_services

    try:
        rows = read_manifest(manifest)
        archive_root(source)
        if batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
    except CallvaultError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 2
    try:
        services = build_services(settings)  # checks the configuration (and migrates)
    except CallvaultError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 2
    if workers > 1:
        services.close()  # the import processes open their own (forked before any thread)
    # Each row's fate goes to the summary and --report; per-row warnings would bury the bar.
    logging.getLogger("streams.ingest").setLevel(logging.ERROR)
    handle = None
    closed = True
    try:
        handle = report.open("w", encoding="utf-8") if report is not None else None
        if workers > 1:
            tqdm.monitor_interval = 0  # no monitor thread: the import processes are forked
        with tqdm(total=len(rows), unit="file", desc="importing", file=sys.stderr) as bar:
            if workers > 1:
                summary = run_import_workers(
                    lambda: build_services(settings), source, rows, workers=workers,
                    move=move, retry_failed=retry_failed, batch_size=batch_size,
                    on_outcome=lambda outcome: _write_report(handle, outcome),
                    progress=bar.update,
                )  # fmt: skip
            else:
                summary = run_import(
                    services, source, rows,
                    move=move, retry_failed=retry_failed, batch_size=batch_size,
                    on_outcome=lambda outcome: _write_report(handle, outcome),
                    progress=bar.update,
                )  # fmt: skip
    except OSError as exc:
        click.secho(
            f"error: cannot write report {report}: {exc}; the import stopped (re-run the same "
            "command to resume)", fg="red", err=True,
        )  # fmt: skip
        if handle is not None:  # said once: closing it fails the same way
            with contextlib.suppress(OSError):
                handle.close()
            handle = None
        return 2
    except KeyboardInterrupt:
        click.secho("error: interrupted; re-run the same command to resume", fg="red", err=True)
        return 1
    except CallvaultError as exc:
        click.secho(
            f"error: import stopped: {exc}; re-run the same command to resume", fg="red", err=True
        )
        return 1
    finally:
        services.close()
        if handle is not None:
            closed = _close_report(handle, report)
    if not closed:  # every row was imported; the report lacks its last lines
        _finish(summary, source, move)
        return 2
    return _finish(summary, source, move)


def _close_report(handle: IO[str], report: Path | None) -> bool:
    """Close the report (its last lines are written now); False, said, if they cannot be."""
    import click

    try:
        handle.close()
    except OSError as exc:  # e.g. the disk filled up (/dev/full)
        click.secho(f"error: cannot write report {report}: {exc}", fg="red", err=True)
        return False
    return True


def _finish(summary: ImportSummary, source: str, move: bool) -> int:
    click.echo(format_summary(summary, source))
    declined_kept = summary.by_status["declined"] if not move else 0
    if declined_kept:
        click.echo(
            f"note: {declined_kept} original(s) with declined consent remain in the archive "
            "(not stored; delete them, or re-run with --move)"
        )
    if summary.incomplete:
        click.echo(
            f"{summary.incomplete} row(s) are not under governance; see --report, fix them, "
            "and re-run with --retry-failed"
        )
        return 1
    return 0


def _define_command() -> Any:
    import click

    @click.command("import")
    @click.argument("source")
    @click.option(
        "--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
        help="CSV, JSON or JSON-lines manifest: one row per file (see README).",
    )  # fmt: skip
    @click.option(
        "--report", type=click.Path(dir_okay=False, path_type=Path),
        help="Write one JSON line per manifest row (status, reason) to this file.",
    )  # fmt: skip
    @click.option("--move", is_flag=True, help="Delete each original once stored (or declined).")
    @click.option(
        "--retry-failed", is_flag=True, help="Retry rows that failed in an earlier import."
    )
    @click.option(
        "--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True,
        help="Rows per pipeline batch (one vault flush and one catalog commit each).",
    )  # fmt: skip
    @click.option(
        "--workers", default=1, show_default=True, type=click.IntRange(1, 64),
        help="Import processes (one core each: encryption and hashing hold the GIL).",
    )  # fmt: skip
    @click.pass_context
    def import_command(
        ctx: click.Context,
        source: str,
        manifest: Path,
        report: Path | None,
        move: bool,
        retry_failed: bool,
        batch_size: int,
        workers: int,
    ) -> None:
        """Bring an archive (folder or s3://bucket/prefix) under governance via the ingest pipeline.

        Re-running skips what is done. Exit 0: every row is governed; 1: some rows
        failed (see --report); 2: bad manifest or configuration.
        """
        ctx.exit(
            _import_cli(ctx.obj, source, manifest, report, move, retry_failed, batch_size, workers)
        )

    return import_command


import_command = _define_command()
