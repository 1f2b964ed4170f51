"""The root of callvault's error tree.

Every error callvault raises on purpose derives from :class:`CallvaultError`,
so a caller can catch one type at the edge (CLI, HTTP view, stream agent)::

    CallvaultError
    ├── ConfigError                   callvault.errors: bad settings / URLs
    ├── StartupError                  callvault.errors: a process cannot start (web port)
    ├── InputFileError                callvault.errors: a file an operator named cannot be
    │                                 read (callvault.inputfiles: not a regular file, too big)
    ├── EmbeddedServerError           callvault.errors: an embedded server would not start
    │   └── BrokerError               the embedded Kafka-protocol broker (tansu)
    ├── Unavailable                   callvault.errors: a backend is unavailable (a marker
    │                                 mixed into the *Unavailable errors below: retrying
    │                                 the same work may succeed, i.e. infrastructure)
    ├── SynthError                    callvault.synth: espeak-ng / sox failed
    ├── storage.errors.StorageError   (storage/errors.py)
    │   ├── RecordingNotFound
    │   ├── IntegrityError            tampered, truncated or spliced object
    │   ├── BackendUnavailable        (also Unavailable)
    │   │   └── VaultUnavailable      the vault folder / bucket cannot be used now
    │   ├── CustomerRefNotCanonical   a customer reference not in canonical form
    │   ├── KeyringError
    │   │   ├── KeyDestroyed          the subject key was shredded (erasure)
    │   │   └── KeyringUnavailable    key file / KMS unreachable (BackendUnavailable)
    │   ├── AudioError
    │   │   ├── UnsupportedAudioFormat
    │   │   ├── AudioMislabelled      the container is not the declared format
    │   │   ├── AudioMismatch         declared rate/channels contradict the audio
    │   │   └── AudioTooLong          decodes to more than the declared call allows
    │   ├── LandingError              landing audio unreadable
    │   │   ├── LandingRejected       refused for good, with a reason code
    │   │   └── LandingStoreUnavailable  landing folder / bucket down (BackendUnavailable)
    │   ├── CatalogError
    │   │   ├── LeaseHeld             a singleton job runs in another worker (leases)
    │   │   └── CatalogUnavailable    database unreachable, locked, full (BackendUnavailable)
    │   ├── AuditError
    │   │   └── CheckpointError       storage.checkpoints: a rewritten log is not signed
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
        ├── InputRejected             input outside its bounds (streams.bounds)
        ├── PrivacyRequestRejected    a malformed privacy request
        ├── ManifestError             an unusable import manifest
        ├── SourceRefused             a telephony source's notification that cannot be mapped
        └── RequestError              an HTTP request refused (streams/http/errors.py maps
            │                         each to its status): AuthError, BadRequest,
            │                         PayloadTooLarge, UnsupportedMediaType, NotFound,
            │                         AccessDenied, AuditUnavailable, LandingUnavailable,
            └──                       RangeNotSatisfiable, AudioFailure, Unprocessable

``tests/test_errors.py`` proves every exception class of the four packages is in it.

An error is *infrastructure* when it, or an error in its ``__cause__`` chain, is an
:class:`Unavailable` (:func:`is_unavailable`): the ingest agent retries it with capped
back-off and never skips the work. Anything else on the ingest path is permanent for
the event that caused it (dead-lettered with a reason code).
"""

from __future__ import annotations

__all__ = [
    "CallvaultError",
    "ConfigError",
    "StartupError",
    "InputFileError",
    "EmbeddedServerError",
    "BrokerError",
    "Unavailable",
    "is_unavailable",
    "unavailable_backend",
]


class CallvaultError(Exception):
    """Base class of every error callvault raises on purpose."""


class ConfigError(CallvaultError):
    """A setting is missing, malformed or names an unsupported backend."""


class EmbeddedServerError(CallvaultError):
    """An embedded child server (S3 server, broker) could not be started or reached."""


class BrokerError(EmbeddedServerError):
    """The embedded Kafka-protocol broker could not be started or reached."""


class StartupError(CallvaultError):
    """A process cannot start: its web port is taken or invalid, logging cannot be set up."""


class InputFileError(CallvaultError):
    """A file an operator named (config, policy, manifest, request, receipt, secret)
    cannot be read: missing, unreadable, not a regular file, too large or not UTF-8. The
    message names the file and why; callers re-raise it as their own error."""


class Unavailable(CallvaultError):
    """A backend (broker, vault, catalog, keyring/KMS, landing store) is unavailable.

    A marker mixed into the storage and streams errors that mean "the same work may
    succeed later"; ``backend`` names which one (a bounded set: metric label).
    """

    backend: str = "backend"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 32:
        seen.append(current)
        current = current.__cause__
    return seen


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is infrastructure: it, or an error it was raised from, is
    :class:`Unavailable`."""
    return any(isinstance(link, Unavailable) for link in _chain(exc))


def unavailable_backend(exc: BaseException) -> str:
    """The ``backend`` of the first :class:`Unavailable` in ``exc``'s chain (``"other"``)."""
    for link in _chain(exc):
        if isinstance(link, Unavailable):
            return link.backend
    return "other"
