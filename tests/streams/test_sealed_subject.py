"""Audit details that name a customer are sealed under the customer's subject key
(storage.subjectdetails): readable with the keyring until the erasure, shredded by
it, and the hash chain and its signed checkpoints still verify."""

from __future__ import annotations

import json

import pytest

from callvault.services import Services
from storage.catalog.holds import HoldScope
from storage.errors import KeyDestroyed
from storage.subjectdetails import open_subject, sealed_subject
from tests.streams.lifecycle_support import lifecycle_of, store_call, verification


def _request(kind: str, request_id: str) -> dict[str, object]:
    return {
        "type": kind,
        "tenant": "acme",
        "customer_ref": "C-1001",
        "request_id": request_id,
        "identity_verification": verification(),
    }


@pytest.mark.clause("management.safety")
def test_customer_details_are_sealed_and_shredded_by_the_erasure(
    file_services: Services,
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    store_call(services, "r-sealed-1")
    subject_ref = services.keys.subject_ref("acme", "C-1001")
    checkpoints = services.audit_checkpoints()
    lifecycle.privacy.submit(_request("restrict", "PR-S-1"), requested_by="officer-7")
    hold = services.holds.place(
        tenant="acme", scope=HoldScope.SUBJECT, target=subject_ref, reason="litigation",
        reference="CASE-7", placed_by="counsel", actor="user:counsel",
        sealed_target=sealed_subject(services.keys, subject_ref),
    )  # fmt: skip
    services.holds.release(hold.hold_id, released_by="counsel", reason="settled", actor="t")
    lifecycle.privacy.submit(_request("lift-restriction", "PR-S-2"), requested_by="officer-7")
    checkpoints.write_due(services.clock())

    naming = [e for e in services.audit.iter_entries() if "subject" in e.details]
    actions = {e.action for e in naming}
    assert {"privacy.received", "privacy.completed", "hold.placed"} <= actions
    for entry in naming:  # readable with the keyring while the customer exists
        assert open_subject(services.keys, entry.details) is not None
        assert open_subject(services.keys, entry.details)["subject_ref"] == subject_ref  # type: ignore[index]

    lifecycle.privacy.submit(_request("erase", "PR-S-3"), requested_by="officer-7")
    log = [json.dumps(e.details) for e in services.audit.iter_entries()]
    assert not any(subject_ref in text for text in log)  # never in clear
    for entry in naming:  # shredded with the audio
        with pytest.raises(KeyDestroyed):
            open_subject(services.keys, entry.details)
    after = [e for e in services.audit.iter_entries(after_seq=naming[-1].seq)]
    assert any(e.action == "privacy.completed" for e in after)
    assert all("subject" not in e.details for e in after if e.action == "privacy.completed")
    assert services.audit.verify().ok
    checkpoints.write(services.audit.head(), checkpoints.latest())  # type: ignore[arg-type]
    assert checkpoints.verify().ok
