"""The root of callvault's error tree.

Every error callvault raises on purpose derives from :class:`CallvaultError`,
so a caller can catch one type at the edge (CLI, HTTP view, stream agent)::

    CallvaultError
    ├── ConfigError                   callvault.errors: bad settings / URLs
    ├── EmbeddedServerError           callvault.errors: an embedded server would not start
    │   └── BrokerError               the embedded Kafka-protocol broker (tansu)
    ├── SynthError                    callvault.synth: espeak-ng / sox failed
    ├── storage.errors.StorageError   (storage/errors.py)
    │   ├── RecordingNotFound
    │   ├── IntegrityError            tampered, truncated or spliced object
    │   ├── KeyringError
    │   │   └── KeyDestroyed          the subject key was shredded (erasure)
    │   ├── AudioError
    │   │   └── UnsupportedAudioFormat
    │   ├── LandingError              landing audio unreadable (worth retrying)
    │   │   └── LandingRejected       refused for good, with a reason code
    │   ├── CatalogError
    │   ├── AuditError
    │   ├── HoldError
    │   │   └── HoldNotFound
    │   ├── ReceiptError
    │   │   └── ReceiptNotFound
    │   ├── PrivacyRequestError
    │   │   └── PrivacyRequestNotFound
    │   └── EvaluationError           a malformed evaluation / assignment, or a stale write
    │       └── AssignmentNotFound
    ├── policies.errors.PolicyError   (policies/errors.py)
    │   ├── PolicyFileError           invalid policy file (with location)
    │   └── PolicyInputError          a decision called with bad input (also a ValueError)
    └── streams.errors.StreamError    (streams/errors.py)
        ├── EventRejected             a bad event (carries a DLQ reason code)
        ├── PrivacyRequestRejected    a malformed privacy request
        ├── ManifestError             an unusable import manifest
        ├── SourceRefused             a telephony source's notification that cannot be mapped
        └── RequestError              an HTTP request refused (streams/http/errors.py maps
            │                         each to its status): AuthError, BadRequest,
            │                         PayloadTooLarge, UnsupportedMediaType, NotFound,
            │                         AccessDenied, AuditUnavailable, LandingUnavailable,
            └──                       RangeNotSatisfiable, AudioFailure

``tests/test_errors.py`` proves every exception class of the four packages is in it.
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
