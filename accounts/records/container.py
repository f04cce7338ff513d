"""The records component: the provider's access-token check and subject directory,
handed in by the protocol layer (this package sits below it), and the request's
``RecordService``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from accounts.records.services import RecordService, SubjectDirectory
from idp.core.runtime import Component, Runtime, audit_log, db


class BearerCheck(Protocol):
    """Checks an access token this provider issued: its claims, with ``scope`` narrowed
    to what the client is still registered for, or None when the token is not valid,
    expired or revoked, or its client is gone."""

    def __call__(self, token: str) -> Mapping[str, Any] | None: ...


class Records(Component):
    extension: ClassVar[str] = "accounts.records"

    def __init__(self, core: Runtime, bearer: BearerCheck, subjects: SubjectDirectory) -> None:
        self.core = core
        self.bearer = bearer
        self.subjects = subjects

    def service(self, actor: str | None = None) -> RecordService:
        return RecordService(db(), audit_log(actor), self.core.clock, self.subjects)
