"""Composition root: build every collaborator from :class:`~callvault.settings.Settings`.

Backends are chosen by URL in exactly one place each (``open_vault``, ``open_catalog``,
``open_keyring``); :func:`build_services` opens them, and :meth:`streams.services.
Services.over` opens every governance store over the catalog once, into one bundle
that the worker, the CLI commands, the benchmarks and the tests share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callvault.settings import Settings
from policies import load_policy
from storage.catalog import SqlTimeouts, open_catalog
from storage.crypto import Keyring, open_keyring
from storage.landing import Landing
from storage.types import AuditEntry
from storage.vault import make_s3_client, open_vault
from streams.bounds import TimeWindow
from streams.services import Services as StreamServices
from streams.services import WorkerConfig
from streams.sources.config import load_sources

__all__ = ["Services", "build_services", "keyring_for", "worker_config"]


@dataclass
class Services(StreamServices):
    """The streams bundle plus the settings it was made from (for the CLI and tests)."""

    settings: Settings | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def worker_config(settings: Settings) -> WorkerConfig:
    """What ``streams`` needs of the settings."""
    return WorkerConfig(
        worker_id=settings.worker_id,
        data_dir=settings.data_dir,
        web_host=settings.web_host,
        web_port=settings.web_port,
        reconcile_after_seconds=settings.reconcile_after_seconds,
        metrics_interval_seconds=settings.metrics_interval_seconds,
        partitions=settings.partitions,
        audit_checkpoint_records=settings.audit_checkpoint_records,
        audit_checkpoint_seconds=settings.audit_checkpoint_seconds,
        log_level=settings.log_level,
        max_audio_bytes=settings.max_audio_bytes,
        retry_cap_seconds=settings.retry_cap_seconds,
        ready_stall_seconds=settings.ready_stall_seconds,
        ready_min_free_bytes=settings.ready_min_free_bytes,
        landing_roots=tuple(settings.landing_roots),
        call_window=TimeWindow(
            settings.earliest_call_time, timedelta(seconds=settings.call_time_ahead_seconds)
        ),
    )


def sql_timeouts(settings: Settings) -> SqlTimeouts:
    """The bounds of every catalog connection (``CALLVAULT_SQL_*``)."""
    return SqlTimeouts(
        statement=settings.sql_statement_timeout_seconds,
        lock=settings.sql_lock_timeout_seconds,
        idle_in_transaction=settings.sql_idle_in_transaction_timeout_seconds,
        connect=settings.sql_connect_timeout_seconds,
        keepalive=settings.sql_keepalive_seconds,
    )


def s3_client_options(settings: Settings) -> dict[str, Any]:
    """Region, retries and timeouts of every S3 client (vault, landing, imports)."""
    return {
        "region": settings.s3_region,
        "max_attempts": settings.s3_max_attempts,
        "connect_timeout": float(settings.s3_connect_timeout_seconds),
        "read_timeout": float(settings.s3_read_timeout_seconds),
    }


def s3_client_factory(settings: Settings) -> Callable[[], object]:
    """Makes the S3 client landing roots and imports use (endpoint and region from settings)."""

    def make() -> object:
        return make_s3_client(endpoint_url=settings.s3_endpoint, **s3_client_options(settings))

    return make


def keyring_for(settings: Settings) -> Keyring:
    """The master keyring ``settings`` names (``kms://`` uses ``kms_endpoint`` and keeps
    its secrets file in ``$CALLVAULT_DATA_DIR/keys/kms-secrets.json`` unless the URL says).

    Raises:
        ConfigError: the keyring URL is malformed.
        KeyringError: the keyring could not be opened.
    """
    return open_keyring(
        settings.keyring,
        region=settings.s3_region,
        endpoint=settings.kms_endpoint,
        secrets_path=settings.data_dir / "keys" / "kms-secrets.json",
    )


def build_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = _utcnow,
    migrate: bool = True,
) -> Services:
    """Open (and create, for the embedded default) everything ``settings`` names.

    Raises:
        ConfigError: a URL names an unsupported backend.
        PolicyFileError: the policy file is invalid (the worker refuses to start).
        StorageError: a backend could not be opened.
    """
    policy = load_policy(settings.policy)
    sources = load_sources(settings.sources)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for root in settings.landing_roots:
        if root.startswith("file://"):
            Path(root.removeprefix("file://")).mkdir(mode=0o700, parents=True, exist_ok=True)
    keyring = keyring_for(settings)
    listeners: list[Callable[[AuditEntry], None]] = []

    def fan_out(entry: AuditEntry) -> None:
        for listener in listeners:
            listener(entry)

    catalog = open_catalog(
        settings.catalog,
        migrate=migrate,
        on_append=fan_out,
        clock=clock,
        timeouts=sql_timeouts(settings),
    )
    vault = open_vault(
        settings.vault, s3_endpoint=settings.s3_endpoint, **s3_client_options(settings)
    )
    landing = Landing(
        settings.landing_roots,
        s3_client_factory=s3_client_factory(settings),
        max_bytes=settings.max_audio_bytes,
    )
    return Services.over(
        config=worker_config(settings),
        policy=policy,
        keyring=keyring,
        catalog=catalog,
        vault=vault,
        landing=landing,
        clock=clock,
        audit_listeners=listeners,
        s3_client_factory=s3_client_factory(settings),
        sources=sources,
        settings=settings,
    )
