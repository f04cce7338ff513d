"""The pki package's app-lifetime parts (the trust store and its revocation checker,
the sign-in challenges), and its services for one request."""

from __future__ import annotations

from typing import ClassVar

from accounts.container import Accounts
from idp.core.runtime import Component, Runtime, audit_log, db
from pki.certificates import CertificateService
from pki.challenge import Challenges
from pki.revocation import RevocationChecker
from pki.services import CRL_PATH, PkiService
from pki.truststore import TrustStore


class Pki(Component):
    extension: ClassVar[str] = "pki"

    def __init__(self, core: Runtime, checker: RevocationChecker) -> None:
        self.core = core
        self.crl_url = core.settings.issuer.rstrip("/") + CRL_PATH
        self.checker = checker
        self.trust = TrustStore(checker)
        self.challenges = Challenges(core.store, clock=core.clock)

    def service(self, actor: str | None = None) -> PkiService:
        return PkiService(
            db(),
            data_dir=self.core.settings.data_dir,
            crl_url=self.crl_url,
            clock=self.core.clock,
            audit=audit_log(actor),
            on_change=self.trust.invalidate,
        )

    def certificates(self, actor: str | None = None) -> CertificateService:
        accounts = Accounts.of()
        return CertificateService(
            db(),
            self.trust,
            accounts.account_service(actor),
            accounts.realname_service(actor),
            accounts.organisation_service(actor),
            accounts.authorisation_service(actor),
            audit_log(actor),
            self.core.clock,
        )
