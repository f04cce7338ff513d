"""The pki package's app-lifetime parts, and its services for one request."""

from __future__ import annotations

from typing import ClassVar

from idp.core.runtime import Component, Runtime, audit_log, db
from pki.services import CRL_PATH, PkiService


class Pki(Component):
    extension: ClassVar[str] = "pki"

    def __init__(self, core: Runtime) -> None:
        self.core = core
        self.crl_url = core.settings.issuer.rstrip("/") + CRL_PATH

    def service(self, actor: str | None = None) -> PkiService:
        return PkiService(
            db(),
            data_dir=self.core.settings.data_dir,
            crl_url=self.crl_url,
            clock=self.core.clock,
            audit=audit_log(actor),
        )
