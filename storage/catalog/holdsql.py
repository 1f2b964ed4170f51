"""The SQL form of "an active legal hold covers this recording", in a module of its own
so that the catalog (which queues held recordings for the vault mirror at ingest), the
holds and the end-of-life queries share it without importing each other."""

from __future__ import annotations

__all__ = ["hold_match_sql"]


def hold_match_sql(alias: str = "r") -> str:
    """SQL that is true when an active hold covers the recording row ``alias``."""
    return (
        "EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL "
        f"AND h.tenant = {alias}.tenant AND ("
        f"(h.scope = 'recording' AND h.target = {alias}.recording_id) OR "
        f"(h.scope = 'subject' AND h.target = {alias}.subject_ref) OR "
        f"(h.scope = 'call' AND h.target = {alias}.call_id)))"
    )
