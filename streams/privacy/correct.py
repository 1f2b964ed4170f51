"""The ``correct`` request: re-key misattributed recordings under the right customer's
subject key and fix ``queue`` / ``agent_id`` (see :mod:`streams.privacy`).

Order of effects per re-keyed recording: the new object is put; the catalog switches
to it and records the old object key for cleanup in the same commit
(``EndOfLifeStore.update_fields``); the old object is deleted and its cleanup record
dropped. A crash before the delete leaves the record, and the sweep's resume path
(``RetentionService.finish_cleanups``, also run when requests are resumed) deletes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from storage.catalog.audit import AuditDraft
from storage.catalog.requests import PrivacyRequest, RequestStatus
from storage.types import RecordingRow, RecordingState
from streams.errors import PrivacyRequestRejected
from streams.privacy.context import BaseHandler, RequestParams
from streams.privacy.input import customer_ref_of

__all__ = ["CorrectHandler", "CORRECTABLE"]

#: The fields a correction may fix.
CORRECTABLE = ("customer_ref", "queue", "agent_id")


class CorrectHandler(BaseHandler):
    """``correct``: audited with keyed before/after digests, never values."""

    @staticmethod
    def read_input(data: Mapping[str, Any], customer_ref: str) -> RequestParams:
        raw = data.get("corrections")
        if not isinstance(raw, dict) or not raw:
            raise PrivacyRequestRejected(
                "missing-field", f"corrections must name at least one of {', '.join(CORRECTABLE)}"
            )
        corrections: dict[str, str] = {}
        for key, value in raw.items():
            if key not in CORRECTABLE:
                raise PrivacyRequestRejected("bad-field", f"cannot correct {key!r}")
            if key == "customer_ref":  # canonical, as sent: never stripped
                corrections[key] = customer_ref_of(raw, key)
                continue
            if not isinstance(value, str) or not value.strip() or len(value) > 256:
                raise PrivacyRequestRejected(
                    "bad-field", f"corrections.{key} must be a non-empty string"
                )
            corrections[key] = value.strip()
        if corrections.get("customer_ref") == customer_ref:
            raise PrivacyRequestRejected(
                "bad-field", "corrections.customer_ref equals customer_ref"
            )
        return {"corrections": corrections}

    def stored_params(self, tenant: str, kind_input: RequestParams) -> RequestParams:
        corrections: dict[str, str] = kind_input["corrections"]
        params: RequestParams = {
            "corrections": {
                key: self.ctx.digest(tenant, key, value) for key, value in corrections.items()
            }
        }
        if "customer_ref" in corrections:
            params["new_subject_ref"] = self.ctx.keys.subject_ref(
                tenant, corrections["customer_ref"]
            )
        for key in ("queue", "agent_id"):
            if key in corrections:
                # operational metadata, not a customer identifier: kept to apply it
                params.setdefault("set", {})[key] = corrections[key]
        return params

    def execute(self, request: PrivacyRequest) -> PrivacyRequest:
        corrections = request.params.get("corrections", {})
        new_subject = request.params.get("new_subject_ref")
        metadata = request.params.get("set", {})
        rows = self.ctx.rows(request, (RecordingState.STORED,))
        changed: list[str] = []
        for row in rows:
            before: dict[str, str] = {}
            after: dict[str, str] = {}
            changes: dict[str, Any] = {}
            for key in ("queue", "agent_id"):
                if key in metadata and getattr(row, key) != metadata[key]:
                    before[key] = self.ctx.digest(row.tenant, key, getattr(row, key))
                    after[key] = corrections[key]
                    changes[key] = metadata[key]
            if new_subject is not None and row.subject_ref != new_subject:
                changes.update(self._rekey(row, new_subject))
                before["subject_ref"] = row.subject_ref  # pseudonyms: keyed hashes already
                after["subject_ref"] = new_subject
            if not changes:
                continue
            self.ctx.endoflife.update_fields(
                row.recording_id,
                changes,
                audit=AuditDraft(
                    actor=self.ctx.actor,
                    action="privacy.corrected",
                    outcome="ok",
                    reason="requests.revision",
                    recording_id=row.recording_id,
                    details={
                        "request_id": request.request_id,
                        "fields": sorted(before),
                        "before_digests": before,
                        "after_digests": after,
                    },
                ),
            )
            if "object_key" in changes:
                self.ctx.vault.delete(row.object_key)
                self.ctx.endoflife.drop_cleanups([row.object_key])
            changed.append(row.recording_id)
        return self.ctx.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result={"corrected": changed, "fields": sorted(corrections)},
            progress={"corrected": len(changed)},
        )

    def _rekey(self, row: RecordingRow, new_subject: str) -> dict[str, Any]:
        """Seal the audio again under ``new_subject``'s key, under a new object key."""
        blob = self.ctx.vault.get(row.object_key)
        audio = self.ctx.keys.open_recording(blob)
        tags = self.ctx.vault.head(row.object_key).tags
        sealed = self.ctx.keys.seal_recording(
            recording_id=row.recording_id,
            tenant=row.tenant,
            subject_ref=new_subject,
            plaintext=audio,
        )
        digest = self.ctx.keys.keyring.pseudonymize(
            row.tenant, f"object:{row.recording_id}:{sealed.subject_key_id}"
        )
        key = f"rec/{row.tenant}/{digest[:2]}/{digest}.cvlt"
        written = self.ctx.vault.put(key, sealed.blob, tags=tags)
        return {
            "subject_ref": new_subject,
            "subject_key_id": sealed.subject_key_id,
            "object_key": key,
            "object_version": written.version_id,
            "ciphertext_sha256": hashlib.sha256(sealed.blob).hexdigest(),
            "stored_size": len(sealed.blob),
        }
