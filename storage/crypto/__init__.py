"""Envelope encryption and the key hierarchy: master keyring -> subject key -> data key.

- :mod:`storage.crypto.envelope`: the sealed object format (chunked AES-256-GCM).
- :mod:`storage.crypto.keys`: :class:`KeyService`, per-customer subject keys over a
  keyring and a subject key store (the catalog); crypto-shredding.
- :mod:`storage.crypto.keyring`: the :class:`Keyring` protocol, shared HMAC helpers and
  the URL registry (``file://`` -> :mod:`storage.crypto.local`, ``kms://`` ->
  :mod:`storage.crypto.kms`).
"""

from __future__ import annotations

from storage.crypto.envelope import EnvelopeHeader
from storage.crypto.keyring import Keyring, open_keyring
from storage.crypto.keys import KeyService, SealedRecording, SubjectKeyStore
from storage.crypto.kms import KmsKeyring
from storage.crypto.local import LocalKeyring

__all__ = [
    "EnvelopeHeader",
    "Keyring",
    "KeyService",
    "KmsKeyring",
    "LocalKeyring",
    "SealedRecording",
    "SubjectKeyStore",
    "open_keyring",
]
