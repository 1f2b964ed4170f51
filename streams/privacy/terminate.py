"""``contract-terminated``: billing says a customer's contract ended; every recording of
theirs moves to the end-of-contract schedule (policies.retain_until). Sent by the
billing system, so no identity verification is needed; ``terminated_at`` is."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from storage.catalog import PrivacyRequest, RequestStatus
from streams.errors import PrivacyRequestRejected
from streams.privacy.context import BaseHandler, RequestParams
from streams.privacy.input import parse_time

__all__ = ["ContractTerminatedHandler"]


class ContractTerminatedHandler(BaseHandler):
    needs_identity: ClassVar[bool] = False

    @staticmethod
    def read_input(data: Mapping[str, Any], customer_ref: str) -> RequestParams:
        if "terminated_at" not in data:
            raise PrivacyRequestRejected("missing-field", "terminated_at is required")
        return {"terminated_at": parse_time(data["terminated_at"], "terminated_at")}

    def stored_params(self, tenant: str, kind_input: RequestParams) -> RequestParams:
        return {"terminated_at": kind_input["terminated_at"].isoformat()}

    def execute(self, request: PrivacyRequest) -> PrivacyRequest:
        terminated_at = datetime.fromisoformat(str(request.params["terminated_at"]))
        effective, changed = self.ctx.retention.terminate_contract(
            tenant=request.tenant,
            subject_ref=request.subject_ref,
            terminated_at=terminated_at,
            request_id=request.request_id,
        )
        return self.ctx.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result={"terminated_at": effective.isoformat(), "rescheduled": changed},
            progress={"rescheduled": changed},
        )
