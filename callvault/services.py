"""Composition root: build every collaborator from :class:`~callvault.settings.Settings`.

Backends are chosen by URL in exactly one place each (``open_vault``, ``open_catalog``,
``open_keyring``); :func:`build_services` wires them into one :class:`Services`
bundle that the worker, the CLI commands, the benchmarks and the tests share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from callvault.settings import Settings
from policies import Policy, load_policy
from storage.audit import AuditLog
from storage.catalog import Catalog, open_catalog
from storage.keyring import Keyring, open_keyring
from storage.keys import KeyService
from storage.landing import Landing
from storage.types import AuditEntry
from storage.vault import Vault, open_vault

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    """Everything a callvault process talks to, opened once."""

    settings: Settings
    policy: Policy
    keyring: Keyring
    catalog: Catalog
    audit: AuditLog
    keys: KeyService
    vault: Vault
    landing: Landing
    clock: Callable[[], datetime]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.catalog.close()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _s3_client_factory(settings: Settings) -> Callable[[], object]:
    def make() -> object:
        import boto3

        return boto3.client("s3", endpoint_url=settings.s3_endpoint, region_name=settings.s3_region)

    return make


def build_services(
    settings: Settings,
    *,
    on_audit: Callable[[AuditEntry], None] | None = None,
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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for root in settings.landing_roots:
        if root.startswith("file://"):
            from pathlib import Path

            Path(root.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    keyring = open_keyring(settings.keyring, region=settings.s3_region, endpoint=settings.s3_endpoint)
    catalog = open_catalog(settings.catalog)
    if migrate:
        catalog.migrate()
    audit = AuditLog(catalog.database, on_append=on_audit)
    keys = KeyService(keyring, catalog)
    vault = open_vault(settings.vault, s3_endpoint=settings.s3_endpoint, region=settings.s3_region)
    landing = Landing(
        settings.landing_roots,
        s3_client_factory=_s3_client_factory(settings),
        max_bytes=settings.max_audio_bytes,
    )
    return Services(
        settings=settings,
        policy=policy,
        keyring=keyring,
        catalog=catalog,
        audit=audit,
        keys=keys,
        vault=vault,
        landing=landing,
        clock=clock,
    )
