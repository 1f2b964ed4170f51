"""Composition root: build every collaborator from :class:`~callvault.settings.Settings`.

Backends are chosen by URL in exactly one place each (``open_vault``, ``open_catalog``,
``open_keyring``); :func:`build_services` wires them into one :class:`Services`
bundle that the worker, the CLI commands, the benchmarks and the tests share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from callvault.settings import Settings
from policies import Policy, load_policy
from storage.catalog import Catalog, open_catalog
from storage.catalog.audit import AuditLog
from storage.crypto.keyring import Keyring, open_keyring
from storage.crypto.keys import KeyService
from storage.landing import Landing
from storage.types import AuditEntry
from storage.vault import Vault, open_vault
from storage.vault.s3 import make_s3_client

__all__ = ["Services", "build_services", "keyring_for"]


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
    #: Called with every audit entry after it committed (the worker publishes them).
    audit_listeners: list[Callable[[AuditEntry], None]] = field(default_factory=list)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.catalog.close()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _s3_client_factory(settings: Settings) -> Callable[[], object]:
    def make() -> object:
        return make_s3_client(endpoint_url=settings.s3_endpoint, region=settings.s3_region)

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
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for root in settings.landing_roots:
        if root.startswith("file://"):
            Path(root.removeprefix("file://")).mkdir(mode=0o700, parents=True, exist_ok=True)
    keyring = keyring_for(settings)
    listeners: list[Callable[[AuditEntry], None]] = []

    def fan_out(entry: AuditEntry) -> None:
        for listener in listeners:
            listener(entry)

    catalog = open_catalog(settings.catalog, migrate=migrate, on_append=fan_out, clock=clock)
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
        audit=catalog.audit,
        keys=keys,
        vault=vault,
        landing=landing,
        clock=clock,
        audit_listeners=listeners,
    )
