"""The ``[plugins.caf_adapter]`` table."""

from __future__ import annotations

import msgspec


class CafAdapterSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Settings of the CAF adapter (defaults from the Router <-> CAF contract)."""

    assignment_subject: str = "caf.exec.assign.v1"
    stream: str = "CAF_ASSIGN"
    #: global on/off switch for publishing assignments
    assignments_enabled: bool = True
    #: tenants allowed to receive assignments; empty allows all
    allowed_tenants: list[str] = msgspec.field(default_factory=list)
