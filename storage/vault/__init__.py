"""Vaults: where encrypted recordings are stored, chosen by URL.

The contract is :class:`storage.vault.base.Vault`; backends are found by URL scheme
through :data:`BACKENDS` (scheme -> ``"module:Class"``, as faust's ``stores.by_url``
does), so neither this package's base nor a caller imports a backend it does not
use. A backend class provides ``from_url(url, parts, **options)``.

=========  ===================================  =========================================
scheme     backend                              notes
=========  ===================================  =========================================
``file``   :class:`storage.vault.local.LocalVault`   the embedded default, a folder
``s3``     :class:`storage.vault.s3.S3Vault`         AWS S3 or any S3 server (SeaweedFS)
=========  ===================================  =========================================

Adding a backend: write ``storage/vault/<name>.py`` implementing the protocol (run the
contract suite in ``tests/storage/test_vault_contract.py`` on it) and add one line to
:data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from callvault.errors import ConfigError
from storage.vault.base import (
    MAX_KEY_LENGTH,
    MAX_KEY_SEGMENT_LENGTH,
    MAX_TAGS,
    Vault,
    object_sha256,
    validate_key,
    validate_prefix,
    validate_tags,
)
from storage.vault.local import LocalVault
from storage.vault.s3 import S3Vault, make_s3_client

__all__ = [
    "BACKENDS",
    "Vault",
    "LocalVault",
    "S3Vault",
    "open_vault",
    "make_s3_client",
    "object_sha256",
    "validate_key",
    "validate_prefix",
    "validate_tags",
    "MAX_KEY_LENGTH",
    "MAX_KEY_SEGMENT_LENGTH",
    "MAX_TAGS",
]

#: URL scheme -> ``"module:Class"`` of the backend that serves it.
BACKENDS: dict[str, str] = {
    "file": "storage.vault.local:LocalVault",
    "s3": "storage.vault.s3:S3Vault",
}

_EXPECTED = "expected file:///abs/path or s3://bucket[/prefix]"


def backend_class(scheme: str) -> Any:
    """The backend class registered for ``scheme``.

    Raises:
        ConfigError: no backend serves ``scheme``.
    """
    target = BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(f"no vault backend for the URL scheme {scheme!r}; {_EXPECTED}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def open_vault(
    url: str, *, s3_endpoint: str | None = None, region: str = "us-east-1", **options: Any
) -> Vault:
    """Return the vault a URL names: ``file:///abs/path`` or ``s3://bucket[/prefix]``.

    ``options`` go to the backend (S3: ``max_attempts``, ``connect_timeout``,
    ``read_timeout`` of its client; a folder ignores them).

    Raises:
        ConfigError: the URL is malformed or names an unsupported scheme.
        StorageError: a ``file://`` root cannot be created.
    """
    if not isinstance(url, str) or not url:
        raise ConfigError(f"vault URL is empty; {_EXPECTED}")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"vault URL {url!r} must not have a query or fragment")
    if parts.scheme not in BACKENDS:
        raise ConfigError(f"unsupported vault URL {url!r}; {_EXPECTED}")
    vault: Vault = backend_class(parts.scheme).from_url(
        url, parts, s3_endpoint=s3_endpoint, region=region, **options
    )
    return vault
