"""The one mapping from what a view raises to the JSON error it answers.

Views raise; the app's middleware (:func:`streams.http.app.answer_errors`) turns the
exception into ``{"error", "reason"?, "detail"}`` with :func:`error_response`. First
match wins ("its own": the exception's ``reason`` and ``detail``)::

    exception                 status, error               reason, detail
    AuthError idp-unavailable 503 idp-unavailable         idp-unavailable, its detail
                                                          (+ Retry-After: 5): an outage of the
                                                          identity provider is not a bad token
    AuthError                 401 unauthorized            its own (+ WWW-Authenticate: Bearer
                                                          unless a playback grant was refused)
    BadRequest                400 bad-request             its own (reason may be absent)
    PayloadTooLarge           413 too-large               -, its detail
    UnsupportedMediaType      415 unsupported-media-type  -, its detail
    RangeNotSatisfiable       416 range-not-satisfiable   -, "the audio has N bytes"
                                                          (+ Content-Range: bytes */N)
    AccessDenied              by reason: 404 not-found    the decision's reason; its detail
                              (no-recording), 410 gone    or the reason's standard text
                              (recording-not-stored),
                              429 rate-limited (+ Retry-After), else 403 forbidden;
                              tenant-mismatch without a detail (another tenant's):
                              404 not-found, no-recording, "no such recording"
    AuditUnavailable          503 audit-unavailable       -, its detail
    LandingUnavailable        503 landing-unavailable     -, its detail
    Unprocessable             422 unprocessable           its own
    AudioFailure              its status and error        its own
    NotFound                  404 not-found               its own (reason may be absent)
    EventRejected             400 invalid-event           its own
    SourceRefused             its status: 400 bad-request, its own (a telephony source's
                              403 forbidden, 413 too-large, reason code)
                              502 media-unavailable
    LandingRejected           400 invalid-event           its reason, "cannot land this audio"
    PrivacyRequestRejected    400 bad-request; 409        its own
                              conflict for wrong-status
    HoldNotFound,
    PrivacyRequestNotFound,
    ReceiptNotFound           404 not-found               not-found, the message
    HoldError                 400 bad-request             invalid-hold, the message
    AssignmentNotFound        404 not-found               no-assignment, the message
    EvaluationError           by reason: 400 bad-request  its reason, the message
                              (invalid-evaluation), 404
                              (no-recording), 410 gone
                              (recording-not-stored),
                              else 409 conflict (stale,
                              assignment-closed, a sampling
                              exclusion)
    any other CallvaultError  503 unavailable             backend-failed,
                                                          "the catalog or vault failed; try again"
    anything else             500 internal                -, "internal error; see the worker log"

aiohttp's own ``HTTPException`` (unknown route, wrong method) passes through as
aiohttp answers it.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from callvault.errors import CallvaultError
from policies import Reason
from storage.errors import (
    EvaluationError,
    HoldError,
    HoldNotFound,
    LandingRejected,
    PrivacyRequestNotFound,
    ReceiptNotFound,
)
from streams.errors import (
    AccessDenied,
    AudioFailure,
    AuditUnavailable,
    AuthError,
    BadRequest,
    EventRejected,
    LandingUnavailable,
    NotFound,
    PayloadTooLarge,
    PrivacyRequestRejected,
    RangeNotSatisfiable,
    SourceRefused,
    Unprocessable,
    UnsupportedMediaType,
)
from streams.http.rateguard import RATE_LIMITED

__all__ = ["error_response"]

log = logging.getLogger(__name__)

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="callvault"'}

#: The status of a denial by its reason (403 for every other reason).
_DENIAL_STATUS = {
    str(Reason.NO_RECORDING): 404,
    str(Reason.RECORDING_NOT_STORED): 410,
    RATE_LIMITED: 429,
}
_DENIAL_ERROR = {404: "not-found", 410: "gone", 429: "rate-limited"}
_EVALUATION_STATUS = {"invalid-evaluation": 400, "no-recording": 404, "no-assignment": 404,
                      "recording-not-stored": 410}  # fmt: skip
_EVALUATION_ERROR = {400: "bad-request", 404: "not-found", 409: "conflict", 410: "gone"}
#: The error of a refused telephony source notification, by its status.
_SOURCE_ERROR = {403: "forbidden", 413: "too-large", 502: "media-unavailable"}

#: What a denied caller is told, by reason (``denied: <reason>`` for any other).
_DENIAL_DETAILS: dict[str, str] = {
    str(Reason.NO_RECORDING): "no such recording",
    str(Reason.RECORDING_NOT_STORED): "the recording has expired or was erased",
    str(Reason.RECORDING_RESTRICTED): "the customer asked to stop using this recording",
    str(Reason.PURPOSE_NOT_TAGGED): "the recording was not collected for this purpose",
    str(Reason.ROLE_NOT_ALLOWED_PURPOSE): "your role may not use recordings for this purpose",
    str(Reason.NO_PURPOSE): "state the purpose of use",
    str(Reason.UNKNOWN_PURPOSE): "the policy does not define this purpose",
    str(Reason.JUSTIFICATION_REQUIRED): "state a justification (e.g. the evaluation id)",
    str(Reason.LEGAL_BASIS_REQUIRED): "a disclosure needs a legal basis",
    str(Reason.LEGAL_BASIS_UNKNOWN): "the legal basis is not in the policy's closed list",
    str(Reason.REFERENCE_REQUIRED): "a disclosure needs a case or request reference",
    str(Reason.CONTRACT_NOT_LIVE): "your organisation's entrustment contract is not live",
    str(Reason.NO_ORG): "an entrusted role needs an organisation",
    str(Reason.UNKNOWN_ORG): "your organisation is not an entrusted organisation",
    str(Reason.CAPABILITY_NOT_GRANTED): "your role may not do this",
    str(Reason.UNKNOWN_ROLE): "your role is not defined by the policy",
    str(Reason.ASSIGNMENT_REQUIRED): "your role reviews only recordings assigned to you",
    str(Reason.TENANT_SPAN_NOT_ALLOWED): "your role may not hold a token for every tenant",
    str(Reason.ASSIGNMENT_UNKNOWN): "there is no such evaluation assignment",
    str(Reason.ASSIGNMENT_NOT_YOURS): "the evaluation assignment is someone else's",
    str(Reason.ASSIGNMENT_OTHER_RECORDING): "the evaluation assignment is for another recording",
    str(Reason.ASSIGNMENT_PURPOSE): "the evaluation assignment is for another purpose",
    str(Reason.ASSIGNMENT_CLOSED): "the evaluation assignment is completed or cancelled",
    RATE_LIMITED: "too many recordings in the last hour; try again later",
}


def _answer(
    status: int,
    error: str,
    detail: str,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The JSON error every route answers with."""
    body: dict[str, Any] = {"error": error, "detail": detail}
    if reason:
        body["reason"] = reason
    return web.json_response(body, status=status, headers=headers)


def error_response(exc: Exception, route: str) -> web.Response:
    """The answer to ``exc`` raised by the view of ``route`` (the table above); the two
    server-side rows are logged."""
    match exc:
        case AuthError() if exc.reason == "idp-unavailable":
            return _answer(503, "idp-unavailable", exc.detail, exc.reason, {"Retry-After": "5"})
        case AuthError():
            # A refused playback grant is not a bearer-token problem: no challenge.
            challenge = None if exc.reason.startswith("grant-") else _BEARER_CHALLENGE
            return _answer(401, "unauthorized", exc.detail, exc.reason, challenge)
        case BadRequest():
            return _answer(400, "bad-request", exc.detail, exc.reason)
        case PayloadTooLarge():
            return _answer(413, "too-large", exc.detail)
        case UnsupportedMediaType():
            return _answer(415, "unsupported-media-type", exc.detail)
        case RangeNotSatisfiable():
            return _answer(
                416,
                "range-not-satisfiable",
                f"the audio has {exc.size} bytes",
                headers={"Content-Range": f"bytes */{exc.size}", "Accept-Ranges": "bytes"},
            )
        case AccessDenied() if exc.reason == str(Reason.TENANT_MISMATCH) and not exc.detail:
            # Another tenant's recording (or request, hold) is answered exactly like one
            # that does not exist (the audit record keeps the true reason); a tenant the
            # caller named itself in a body is a 403 with a detail.
            return _answer(404, "not-found", "no such recording", str(Reason.NO_RECORDING))
        case AccessDenied():
            status = _DENIAL_STATUS.get(exc.reason, 403)
            retry = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
            detail = exc.detail or _DENIAL_DETAILS.get(exc.reason, f"denied: {exc.reason}")
            return _answer(
                status, _DENIAL_ERROR.get(status, "forbidden"), detail, exc.reason, retry
            )
        case AuditUnavailable():
            return _answer(503, "audit-unavailable", exc.detail)
        case LandingUnavailable():
            return _answer(503, "landing-unavailable", exc.detail)
        case Unprocessable():
            return _answer(422, "unprocessable", exc.detail, exc.reason)
        case AudioFailure():
            return _answer(exc.status, exc.error, exc.detail, exc.reason)
        case NotFound():
            return _answer(404, "not-found", exc.detail, exc.reason)
        case EventRejected():
            return _answer(400, "invalid-event", exc.detail, exc.reason)
        case SourceRefused():
            error = _SOURCE_ERROR.get(exc.status, "bad-request")
            return _answer(exc.status, error, exc.detail, exc.reason)
        case LandingRejected():
            return _answer(400, "invalid-event", "cannot land this audio", exc.reason)
        case PrivacyRequestRejected() if exc.reason == "wrong-status":
            return _answer(409, "conflict", exc.detail, exc.reason)
        case PrivacyRequestRejected():
            return _answer(400, "bad-request", exc.detail, exc.reason)
        case HoldNotFound() | PrivacyRequestNotFound() | ReceiptNotFound():
            return _answer(404, "not-found", str(exc), "not-found")
        case HoldError():
            return _answer(400, "bad-request", str(exc), "invalid-hold")
        case EvaluationError():
            status = _EVALUATION_STATUS.get(exc.reason, 409)
            return _answer(status, _EVALUATION_ERROR[status], exc.detail, exc.reason)
        case CallvaultError():
            log.error("%s failed: %s", route, exc)
            return _answer(
                503, "unavailable", "the catalog or vault failed; try again", "backend-failed"
            )
        case _:
            log.error("unhandled error on %s", route, exc_info=exc)
            return _answer(500, "internal", "internal error; see the worker log")
