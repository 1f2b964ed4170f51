"""Typed, frozen settings, read once at start-up.

Every setting comes from a ``CALLVAULT_*`` environment variable, or from a TOML
file named by ``CALLVAULT_CONFIG`` (keys are the lower-case setting names, e.g.
``vault = "s3://bucket"``); the environment wins over the file. Defaults keep
everything under ``CALLVAULT_DATA_DIR`` (``./var``), which is the embedded default
that ``make run`` starts.

The table of variables in README.md is generated from :data:`FIELDS` (see
``callvault config reference``), and a test checks the two agree.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from callvault.errors import ConfigError, InputFileError
from callvault.inputfiles import read_input_text

__all__ = ["Settings", "FIELDS", "LOG_LEVELS", "load_settings"]

ENV_PREFIX = "CALLVAULT_"
_WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
#: The largest config file read (a real one has a few hundred bytes).
MAX_CONFIG_BYTES = 1 << 20


def _meta(help: str, example: str, default_doc: str) -> dict[str, str]:
    return {"help": help, "example": example, "default_doc": default_doc}


@dataclass(frozen=True)
class Settings:
    """Everything a callvault process needs to know about its surroundings."""

    data_dir: Path = field(
        default=Path("var"),
        metadata=_meta("Folder for the embedded default's state.", "/srv/callvault", "./var"),
    )
    broker: str | None = field(
        default=None,
        metadata=_meta(
            "Kafka bootstrap URL; unset starts the embedded tansu broker.",
            "kafka://kafka-1:9092,kafka-2:9092",
            "(embedded broker)",
        ),
    )
    embedded_broker_port: int = field(
        default=9092,
        metadata=_meta("Port of the embedded broker (127.0.0.1).", "19092", "9092"),
    )
    embedded_broker_storage: str = field(
        default="s3",
        metadata=_meta(
            "Where the embedded broker keeps its topics: s3 (on the embedded SeaweedFS "
            "S3 server, under $CALLVAULT_DATA_DIR/s3: they survive restarts and kill -9) "
            "or memory (faster, gone with the broker).",
            "memory",
            "s3",
        ),
    )
    vault: str = field(
        default="",
        metadata=_meta(
            "Where encrypted recordings are stored.",
            "s3://callvault-recordings",
            "file://$CALLVAULT_DATA_DIR/vault",
        ),
    )
    s3_endpoint: str | None = field(
        default=None,
        metadata=_meta("S3 endpoint for non-AWS S3 (MinIO, moto).", "http://minio:9000", "(AWS)"),
    )
    s3_region: str = field(
        default="us-east-1", metadata=_meta("S3 / KMS region.", "eu-central-1", "us-east-1")
    )
    s3_connect_timeout_seconds: int = field(
        default=10,
        metadata=_meta("Seconds an S3 client waits to connect before it retries.", "3", "10"),
    )
    s3_read_timeout_seconds: int = field(
        default=60,
        metadata=_meta(
            "Seconds an S3 client waits for the next byte of an answer before it retries.",
            "20",
            "60",
        ),
    )
    s3_max_attempts: int = field(
        default=5,
        metadata=_meta(
            "Attempts per S3 request (botocore standard retry mode: 5xx, throttling, resets "
            "and timeouts are retried with exponential back-off and jitter).",
            "8",
            "5",
        ),
    )
    kms_endpoint: str | None = field(
        default=None,
        metadata=_meta(
            "KMS endpoint for non-AWS KMS (moto, LocalStack); used by kms:// keyrings.",
            "http://localstack:4566",
            "(AWS)",
        ),
    )
    catalog: str = field(
        default="",
        metadata=_meta(
            "Catalog database URL.",
            "postgresql://callvault@db/callvault",
            "sqlite:///$CALLVAULT_DATA_DIR/catalog.sqlite3",
        ),
    )
    keyring: str = field(
        default="",
        metadata=_meta(
            "Master keyring: a local key file or an AWS KMS key.",
            "kms://alias/callvault",
            "file://$CALLVAULT_DATA_DIR/keys/master.json",
        ),
    )
    policy: Path | None = field(
        default=None,
        metadata=_meta(
            "Policy file (purposes, roles, retention).",
            "/etc/callvault/policy.yaml",
            "(the policy shipped in policies/data/policy.yaml)",
        ),
    )
    web_host: str = field(
        default="127.0.0.1", metadata=_meta("Web server bind address.", "0.0.0.0", "127.0.0.1")
    )
    web_port: int = field(default=8080, metadata=_meta("Web server port.", "8081", "8080"))
    landing_roots: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Comma-separated file:// and s3:// prefixes audio may be read from.",
            "file:///var/spool/asterisk/monitor,s3://pbx-landing/calls/",
            "file://$CALLVAULT_DATA_DIR/landing",
        ),
    )
    reconcile_after_seconds: int = field(
        default=600,
        metadata=_meta(
            "Age after which a landing file with no catalog entry is re-announced.", "300", "600"
        ),
    )
    max_audio_bytes: int = field(
        default=512 * 1024 * 1024,
        metadata=_meta("Largest landing audio accepted, in bytes.", "104857600", "536870912"),
    )
    worker_id: str = field(
        default="",
        metadata=_meta(
            "Name of this worker in logs and audit records: 1-128 letters, digits, '.', '_' "
            "or '-'.",
            "worker-2",
            "(hostname)",
        ),
    )
    log_level: str = field(
        default="info",
        metadata=_meta("Log level: debug, info, warning, error or critical.", "debug", "info"),
    )
    earliest_call_time: datetime = field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        metadata=_meta(
            "Earliest call time an event may carry (a date, or ISO 8601 with offset).",
            "2015-01-01",
            "2000-01-01",
        ),
    )
    call_time_ahead_seconds: int = field(
        default=86400,
        metadata=_meta(
            "How far past the worker's clock a call time may lie (clock skew), in seconds.",
            "3600",
            "86400",
        ),
    )
    sources: Path | None = field(
        default=None,
        metadata=_meta(
            "TOML file binding telephony sources (S3 prefixes, Twilio accounts, Connect "
            "instances, PBX landing folders) to tenants (streams/sources/README.md).",
            "/etc/callvault/sources.toml",
            "(no source enabled)",
        ),
    )
    partitions: int = field(
        default=8,
        metadata=_meta(
            "Partitions of the input topics (recordings, privacy requests, sources) when a "
            "worker creates them; the most worker processes that can share the ingest. An "
            "existing topic keeps its count (README: raising it on a live cluster; it never "
            "shrinks).",
            "16",
            "8",
        ),
    )
    metrics_interval_seconds: int = field(
        default=15,
        metadata=_meta(
            "How often a worker refreshes the catalog-wide gauges and consumer lag.", "30", "15"
        ),
    )
    sql_statement_timeout_seconds: int = field(
        default=60,
        metadata=_meta(
            "PostgreSQL statement_timeout of every catalog connection (0: none).", "30", "60"
        ),
    )
    sql_lock_timeout_seconds: int = field(
        default=10,
        metadata=_meta(
            "PostgreSQL lock_timeout: the longest a statement waits for a lock before it "
            "fails and is retried (0: none).",
            "5",
            "10",
        ),
    )
    sql_idle_in_transaction_timeout_seconds: int = field(
        default=60,
        metadata=_meta(
            "PostgreSQL idle_in_transaction_session_timeout: a session idle inside a "
            "transaction that long is ended, its locks released (0: none).",
            "30",
            "60",
        ),
    )
    sql_connect_timeout_seconds: int = field(
        default=5,
        metadata=_meta("Seconds a catalog connection attempt may take.", "3", "5"),
    )
    sql_keepalive_seconds: int = field(
        default=10,
        metadata=_meta(
            "TCP keepalive idle time of catalog connections (both ends); a dead network "
            "fails a query after about twice this (tcp_user_timeout).",
            "5",
            "10",
        ),
    )
    retry_cap_seconds: float = field(
        default=5.0,
        metadata=_meta(
            "Longest pause between two retries of work that failed on infrastructure "
            "(catalog, vault, broker down): 0.5 s doubling to this, with jitter.",
            "2",
            "5",
        ),
    )
    ready_stall_seconds: int = field(
        default=120,
        metadata=_meta(
            "Seconds without ingest progress, while events wait (consumer lag), after "
            "which /readyz answers 503 ingest-stalled and a warning is logged.",
            "60",
            "120",
        ),
    )
    ready_min_free_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata=_meta(
            "Free bytes under the data folder and each landing folder below which "
            "/readyz answers 503 disk-full.",
            "1073741824",
            "268435456",
        ),
    )
    audit_checkpoint_records: int = field(
        default=1000,
        metadata=_meta(
            "Audit records after which a worker signs a checkpoint of the audit chain's head "
            "(kept in the vault under audit/checkpoints/ and sent to callvault.audit).",
            "200",
            "1000",
        ),
    )
    audit_checkpoint_seconds: int = field(
        default=300,
        metadata=_meta(
            "Seconds after which a worker signs a checkpoint of the audit chain's head "
            "if any record was appended since the last one.",
            "60",
            "300",
        ),
    )

    # Derived paths --------------------------------------------------------------
    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"


FIELDS = tuple(fields(Settings))


def _parse_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a whole number") from None
    if value < 0:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} must not be negative")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _parse_float(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a finite number")
    return value


def _parse_port(name: str, raw: Any) -> int:
    value = _parse_int(name, raw) if isinstance(raw, str) else raw
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} must be a port number 1-65535")
    return value


def _parse_time(name: str, raw: Any) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, date):
        value = datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
    else:
        text = str(raw).strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                value = datetime(day.year, day.month, day.day, tzinfo=UTC)
            else:
                value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"{ENV_PREFIX}{name.upper()}={raw!r} must be YYYY-MM-DD or ISO 8601 with offset"
            ) from None
    if value.tzinfo is None:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} needs a UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is out of range") from None


def _parse_roots(name: str, raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    roots = tuple(item.strip() for item in items if item.strip())
    for root in roots:
        if not root.startswith(("file:///", "s3://")):
            raise ConfigError(
                f"{ENV_PREFIX}LANDING_ROOTS entry {root!r} must start with file:/// or s3://"
            )
    return roots


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "embedded_broker_port": _parse_port,
    "web_port": _parse_port,
    "call_time_ahead_seconds": _parse_int,
    "earliest_call_time": _parse_time,
    "s3_connect_timeout_seconds": _parse_int,
    "s3_read_timeout_seconds": _parse_int,
    "s3_max_attempts": _parse_int,
    "reconcile_after_seconds": _parse_int,
    "metrics_interval_seconds": _parse_int,
    "partitions": _parse_int,
    "sql_statement_timeout_seconds": _parse_int,
    "sql_lock_timeout_seconds": _parse_int,
    "sql_idle_in_transaction_timeout_seconds": _parse_int,
    "sql_connect_timeout_seconds": _parse_int,
    "sql_keepalive_seconds": _parse_int,
    "retry_cap_seconds": _parse_float,
    "ready_stall_seconds": _parse_int,
    "ready_min_free_bytes": _parse_int,
    "audit_checkpoint_records": _parse_int,
    "audit_checkpoint_seconds": _parse_int,
    "max_audio_bytes": _parse_int,
    "landing_roots": _parse_roots,
    "data_dir": lambda _n, raw: Path(raw),
    "policy": lambda _n, raw: Path(raw) if raw else None,
    "sources": lambda _n, raw: Path(raw) if raw else None,
}


def _finish(values: dict[str, Any]) -> Settings:
    data_dir = Path(values["data_dir"]).absolute()
    values["data_dir"] = data_dir
    if not values.get("vault"):
        values["vault"] = f"file://{data_dir / 'vault'}"
    if not values.get("catalog"):
        values["catalog"] = f"sqlite:///{data_dir / 'catalog.sqlite3'}"
    if not values.get("keyring"):
        values["keyring"] = f"file://{data_dir / 'keys' / 'master.json'}"
    if not values.get("landing_roots"):
        values["landing_roots"] = (f"file://{data_dir / 'landing'}",)
    if not values.get("worker_id"):  # a host name may hold what an id may not: replaced
        values["worker_id"] = re.sub(r"[^A-Za-z0-9._-]", "-", os.uname().nodename)[:128]
    if not _WORKER_ID.match(str(values["worker_id"])):
        raise ConfigError(
            f"{ENV_PREFIX}WORKER_ID={values['worker_id']!r} must be 1-128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (it names this worker in "
            "audit records, leases and metrics)"
        )
    for name in (
        "s3_connect_timeout_seconds", "s3_read_timeout_seconds", "s3_max_attempts",
        "sql_connect_timeout_seconds", "sql_keepalive_seconds", "ready_stall_seconds",
        "partitions",
    ):  # fmt: skip
        if int(values[name]) < 1:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}={values[name]!r} must be at least 1")
    for name in (
        "sql_statement_timeout_seconds", "sql_lock_timeout_seconds",
        "sql_idle_in_transaction_timeout_seconds", "ready_min_free_bytes",
    ):  # fmt: skip
        if int(values[name]) < 0:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}={values[name]!r} must not be negative")
    if not 0.5 <= float(values["retry_cap_seconds"]) <= 300:
        raise ConfigError(
            f"{ENV_PREFIX}RETRY_CAP_SECONDS={values['retry_cap_seconds']!r} must be 0.5-300"
        )
    if values.get("embedded_broker_storage") not in ("s3", "memory"):
        raise ConfigError(
            f"{ENV_PREFIX}EMBEDDED_BROKER_STORAGE={values.get('embedded_broker_storage')!r} "
            "must be s3 or memory"
        )
    for port in ("web_port", "embedded_broker_port"):
        values[port] = _parse_port(port, values[port])
    values["earliest_call_time"] = _parse_time("earliest_call_time", values["earliest_call_time"])
    level = str(values["log_level"]).strip().lower()
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"{ENV_PREFIX}LOG_LEVEL={values['log_level']!r} must be one of {', '.join(LOG_LEVELS)}"
        )
    values["log_level"] = level
    if values.get("broker") and not str(values["broker"]).startswith("kafka://"):
        raise ConfigError(
            f"{ENV_PREFIX}BROKER={values['broker']!r} must look like kafka://host:port"
        )
    for url_field, schemes in (
        ("vault", ("file://", "s3://")),
        ("catalog", ("sqlite:///", "postgresql://", "postgres://")),
        ("keyring", ("file://", "kms://")),
    ):
        if not str(values[url_field]).startswith(schemes):
            raise ConfigError(
                f"{ENV_PREFIX}{url_field.upper()}={values[url_field]!r}: "
                f"expected a URL starting with {' or '.join(schemes)}"
            )
    return Settings(**values)


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``) and an optional TOML file.

    Raises:
        ConfigError: a value is malformed, a key is unknown, or the file is unreadable.
    """
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {f.name: f.default for f in FIELDS}
    names = {f.name for f in FIELDS}

    path = config_file or (
        Path(env[f"{ENV_PREFIX}CONFIG"]) if env.get(f"{ENV_PREFIX}CONFIG") else None
    )
    if path is not None:
        try:
            text = read_input_text(path, max_bytes=MAX_CONFIG_BYTES, what="config file")
            from_file = tomllib.loads(text)
        except InputFileError as exc:
            raise ConfigError(str(exc)) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except RecursionError:  # tomllib parses nested arrays recursively
            raise ConfigError(f"cannot read config file {path}: nested too deep") from None
        for key, raw in from_file.items():
            if key not in names:
                raise ConfigError(
                    f"{path}: unknown setting {key!r} (known: {', '.join(sorted(names))})"
                )
            parser = _PARSERS.get(key)
            values[key] = parser(key, raw) if parser and isinstance(raw, str | list) else raw

    for name in names:
        raw = env.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is None or raw == "":
            continue
        parser = _PARSERS.get(name)
        values[name] = parser(name, raw) if parser else raw
    return _finish(values)
