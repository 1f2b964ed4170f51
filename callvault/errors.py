"""The root of callvault's error tree.

Every error callvault raises on purpose derives from :class:`CallvaultError`,
so a caller can catch one type at the edge (CLI, HTTP view, stream agent)::

    CallvaultError
    ├── ConfigError                 callvault.errors: bad settings / URLs
    ├── EmbeddedServerError         callvault.errors: an embedded server would not start
    │   └── BrokerError             the embedded Kafka-protocol broker (tansu)
    ├── storage.errors.StorageError
    │   ├── RecordingNotFound
    │   ├── IntegrityError          tampered, truncated or spliced object
    │   ├── KeyringError
    │   │   └── KeyDestroyed        the subject key was shredded (erasure)
    │   ├── AudioError
    │   │   └── UnsupportedAudioFormat
    │   ├── LandingError            landing audio missing / outside the landing roots
    │   ├── CatalogError
    │   └── AuditError
    ├── policies.errors.PolicyError
    │   └── PolicyFileError         invalid policy file (with location)
    └── streams.errors.StreamError
        ├── EventRejected           a bad event (carries a DLQ reason code)
        └── SourceRefused           a telephony source's notification that cannot be mapped
"""

from __future__ import annotations

__all__ = ["CallvaultError", "ConfigError", "EmbeddedServerError", "BrokerError"]


class CallvaultError(Exception):
    """Base class of every error callvault raises on purpose."""


class ConfigError(CallvaultError):
    """A setting is missing, malformed or names an unsupported backend."""


class EmbeddedServerError(CallvaultError):
    """An embedded child server (S3 server, broker) could not be started or reached."""


class BrokerError(EmbeddedServerError):
    """The embedded Kafka-protocol broker could not be started or reached."""
