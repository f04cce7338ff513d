"""The federation package's app-lifetime parts and its services for one request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from accounts.container import Accounts
from federation.scim.services import ProvisioningService
from idp.core.runtime import Component, Runtime, audit_log, db

SCIM_PATH = "/scim/v2"


class BearerCheck(Protocol):
    """Checks an access token this provider issued (the provider implements it; this
    package may not import the protocol layer): its claims, with ``scope`` narrowed to
    what the client is still registered for, or None when the token is not valid,
    expired or revoked, or its client is gone."""

    def __call__(self, token: str) -> Mapping[str, Any] | None: ...


class Federation(Component):
    extension: ClassVar[str] = "federation"

    def __init__(self, core: Runtime, bearer: BearerCheck) -> None:
        self.core = core
        self.bearer = bearer
        self.scim_base = core.settings.issuer.rstrip("/") + SCIM_PATH

    def provisioning(self, client_id: str) -> ProvisioningService:
        actor = f"client:{client_id}"
        accounts = Accounts.of()
        return ProvisioningService(
            db(),
            accounts.account_service(actor),
            accounts.realname_service(actor),
            audit_log(actor),
            self.core.clock,
            client_id=client_id,
            base_url=self.scim_base,
        )
