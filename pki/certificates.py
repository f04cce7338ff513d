"""Certificates as a way into an account: a certificate is checked (path through the
bridge, revocation, the identity its CA's rules name), mapped to the account it is bound
to or whose confirmed identity it names, bound on first use, and listed and unbound on
the account page.

What a binding decides:

* A person's certificate whose identity validates raises the account to real-name level
  5 through ``RealNameService.record_verification`` (method certificate, the CA as the
  source, the certificate's fingerprint as the evidence, until the certificate's end).
  The number is confirmed for the account ("one person, one identity"): a certificate
  naming a number confirmed on another account is refused, without saying which.
* An enterprise certificate is bound by its credit code's blind index (and to the
  organisation when the platform knows it); signing in with it signs in the account it
  is bound to. Acting for the organisation is the enterprise issue's.

Nothing here stores the identifier or the subject DN in clear: a binding keeps the blind
index and the masked form.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.errors import AccountError
from accounts.realname.errors import IdentityAlreadyVerified, IdentityTaken, InvalidName
from accounts.realname.services import (
    DocumentClaim,
    RealNameService,
    VerificationMethod,
    checked_name,
)
from idp.core.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock
from pki.identity import CertificateIdentity, IdentityRefused, IdentityRule, extract_identity
from pki.models import CertificateBinding
from pki.truststore import TrustResult, TrustStore
from pki.validation import BadInput, ValidationOptions

if TYPE_CHECKING:
    from accounts.organisations.authorisations import AuthorisationService
    from accounts.organisations.models import Authorisation, Organisation
    from accounts.organisations.services import OrganisationService
    from accounts.people.models import User
    from accounts.people.services import AccountService


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    return message


NOT_VALID = N_("The certificate is not accepted: %(reason)s")
UNREADABLE = N_("The certificate could not be read. Paste the PEM text of your certificate.")
NO_IDENTITY = N_("The certificate names no identity the platform can use: %(reason)s")
TAKEN = N_(
    "This certificate names an identity that is already verified for another account. "
    "If it is yours, visit a service counter."
)
OTHER_PERSON = N_("This certificate names another person than your account's verified identity.")
BOUND_ELSEWHERE = N_("This certificate is already linked to another account.")
NO_NAME = N_("The certificate carries no name (CN) to verify your identity with.")

SOURCE_PREFIX = "ca:"


class CertificateRefused(Exception):
    """``message`` (an English msgid) and ``params`` are safe to show the person;
    ``code`` is the audit's short code."""

    def __init__(self, message: str, code: str, **params: str) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.code = code
        self.params = params


@dataclass(frozen=True)
class CheckedCertificate:
    der: bytes
    trust: TrustResult
    identity: CertificateIdentity

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def ca(self) -> str:
        assert self.trust.ca is not None  # a checked certificate reached a CA
        return self.trust.ca

    @property
    def not_after(self) -> datetime:
        assert self.trust.not_after is not None
        return self.trust.not_after

    @property
    def serial(self) -> str:
        return f"{x509.load_der_x509_certificate(self.der).serial_number:x}"

    @property
    def organisation_name(self) -> str | None:
        return self._attribute(NameOID.ORGANIZATION_NAME)

    @property
    def common_name(self) -> str | None:
        return self._attribute(NameOID.COMMON_NAME)

    def _attribute(self, oid: x509.ObjectIdentifier) -> str | None:
        try:
            names = x509.load_der_x509_certificate(self.der).subject.get_attributes_for_oid(oid)
        except ValueError:
            return None
        value = names[0].value if names else None
        return value if isinstance(value, str) else None


class CertificateService:
    def __init__(
        self,
        session: Session,
        trust: TrustStore,
        accounts: AccountService,
        realname: RealNameService,
        organisations: OrganisationService,
        authorisations: AuthorisationService,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._session = session
        self._trust = trust
        self._accounts = accounts
        self._realname = realname
        self._organisations = organisations
        self._authorisations = authorisations
        self._audit = audit
        self._clock = clock

    # -- checking ------------------------------------------------------------------------

    def check(self, certificate: bytes) -> CheckedCertificate:
        """Validate through the trust store and read the identity by the CA's rules.
        ``CertificateRefused`` with the reason a person can act on."""
        try:
            result = self._trust.validate(
                self._session, certificate, ValidationOptions(anchors=(), revocation=None)
            )
        except BadInput:
            raise CertificateRefused(UNREADABLE, "unreadable") from None
        if not result.valid:
            raise CertificateRefused(NOT_VALID, "invalid", reason=result.reason)
        leaf = result.certificates[0]
        rules = [IdentityRule.parse(text) for text in result.identity_rules]
        try:
            identity = extract_identity(leaf, rules, today=self._clock.now().date())
        except IdentityRefused as exc:
            raise CertificateRefused(NO_IDENTITY, "no_identity", reason=exc.reason) from None
        return CheckedCertificate(der=leaf, trust=result, identity=identity)

    # -- who it signs in -----------------------------------------------------------------

    def binding_of(self, checked: CheckedCertificate) -> CertificateBinding | None:
        return self._session.scalar(
            select(CertificateBinding).where(CertificateBinding.fingerprint == checked.fingerprint)
        )

    def holder(self, checked: CheckedCertificate) -> User | None:
        """The account this certificate signs in: the one it is bound to, else (a
        person's certificate) the one whose confirmed identity it names."""
        binding = self.binding_of(checked)
        if binding is not None and binding.user_id is not None:
            return self._accounts.get(binding.user_id)
        if checked.identity.kind == "person":
            return self._realname.confirmed_holder(checked.identity.identifier)
        return None

    def signed_in(self, user: User, checked: CheckedCertificate) -> CertificateBinding:
        """The certificate signed ``user`` in: bind it if it is not yet, record its
        use, and (a person's) keep the account at level 5 while it is valid."""
        binding = self.binding_of(checked)
        if binding is None:
            return self.bind(user, checked)
        binding.last_used_at = self._now()
        if checked.identity.kind == "person" and not self._has_live_verification(user, checked):
            self._record_level(user, checked)
        self._session.commit()
        if checked.identity.kind == "organisation" and binding.organisation_id is not None:
            organisation = self._organisations.find(checked.identity.identifier)
            if organisation is not None:
                self._claim(user, organisation, checked)
        return binding

    # -- binding -------------------------------------------------------------------------

    def bind(self, user: User, checked: CheckedCertificate) -> CertificateBinding:
        """Bind the certificate to ``user`` (on first use, or from the account page).
        A person's certificate also records level 5. Refusals are audited."""
        existing = self.binding_of(checked)
        if existing is not None:
            if existing.user_id == user.id:
                return existing
            self._refuse(user, checked, "bound_elsewhere")
            raise CertificateRefused(BOUND_ELSEWHERE, "bound_elsewhere")
        identity = checked.identity
        organisation_id = None
        if identity.kind == "person":
            holder = self._realname.confirmed_holder(identity.identifier)
            if holder is not None and holder.id != user.id:
                self._refuse(user, checked, "identity_taken")
                raise CertificateRefused(TAKEN, "identity_taken")
            self._record_level(user, checked)
            index = self._realname.number_index(identity.identifier)
        else:
            index = self._organisations.uscc_index(identity.identifier) or ""
            organisation = self._organisation_of(user, checked)
            organisation_id = organisation.id if organisation is not None else None
            if organisation is not None:
                self._claim(user, organisation, checked)
        binding = CertificateBinding(
            user_id=user.id,
            organisation_id=organisation_id,
            local_ca_id=checked.trust.ca_id,
            ca_name=checked.ca,
            fingerprint=checked.fingerprint,
            serial=checked.serial,
            identity_kind=identity.kind,
            identifier_type=identity.identifier_type,
            identity_index=index,
            identifier_masked=identity.masked,
            not_after=checked.not_after,
            created_at=self._now(),
            last_used_at=self._now(),
        )
        self._session.add(binding)
        self._session.flush()
        self._audit.record(
            "pki.certificate_bound",
            subject=user.subject,
            details={
                "ca": checked.ca,
                "kind": identity.kind,
                "identifier_type": identity.identifier_type,
                "fingerprint": checked.fingerprint[:16],
            },
        )
        self._session.commit()
        return binding

    def bindings_of(self, user: User) -> list[CertificateBinding]:
        return list(
            self._session.scalars(
                select(CertificateBinding)
                .where(CertificateBinding.user_id == user.id)
                .order_by(CertificateBinding.created_at.desc(), CertificateBinding.id.desc())
            )
        )

    def unbind(self, user: User, binding_id: int) -> bool:
        """Remove one of ``user``'s bindings (the certificate no longer signs in). The
        level it gave stays until the certificate's end, like any verification."""
        binding = self._session.get(CertificateBinding, binding_id)
        if binding is None or binding.user_id != user.id:
            return False
        self._session.delete(binding)
        self._audit.record(
            "pki.certificate_unbound",
            subject=user.subject,
            details={"ca": binding.ca_name, "fingerprint": binding.fingerprint[:16]},
        )
        self._session.commit()
        return True

    # -- an enterprise certificate ------------------------------------------------------

    def _organisation_of(self, user: User, checked: CheckedCertificate) -> Organisation | None:
        """The organisation the certificate's credit code names: known already, or
        registered now when the legal-person registry matches the certificate's
        organisation name (O, else CN); None when it cannot be (the binding is kept by
        the code's blind index and found again once the organisation is known)."""
        code = checked.identity.identifier
        organisation = self._organisations.find(code)
        if organisation is not None:
            return organisation
        name = checked.organisation_name or checked.common_name
        if not name:
            return None
        try:
            return self._organisations.check_with_registry(
                name, code, actor=user.subject
            ).organisation
        except AccountError:
            return None

    def _claim(self, user: User, organisation: Organisation, checked: CheckedCertificate) -> None:
        """The organisation reaches level 5 until the certificate's end and ``user``
        administers it (``AuthorisationService.claim_by_certificate``)."""
        self._authorisations.claim_by_certificate(
            user,
            organisation,
            source=f"{SOURCE_PREFIX}{checked.ca}",
            evidence_ref=checked.fingerprint,
            expires_at=checked.not_after,
        )

    def organisation_authority(
        self, user: User, checked: CheckedCertificate
    ) -> tuple[Organisation, Authorisation] | None:
        """For an enterprise certificate: the organisation it proves and ``user``'s live
        authorisation to act for it (made when the certificate signed in). None for a
        person's certificate, or an organisation the platform does not know yet."""
        if checked.identity.kind != "organisation":
            return None
        organisation = self._organisations.find(checked.identity.identifier)
        if organisation is None:
            return None
        authorisation = self._authorisations.administering(user, organisation)
        if authorisation is None:
            return None
        return organisation, authorisation

    # -- level 5 -------------------------------------------------------------------------

    def _has_live_verification(self, user: User, checked: CheckedCertificate) -> bool:
        now = self._clock.now()
        for verification in self._realname.history(user):
            live = verification.ended_at is None and (
                verification.expires_at is None or verification.expires_at > now
            )
            if live and verification.evidence_ref == checked.fingerprint:
                return True
        return False

    def _record_level(self, user: User, checked: CheckedCertificate) -> None:
        confirmed = self._realname.confirmed_identity(user)
        document = None
        if confirmed is None or confirmed.verified_number_index != self._realname.number_index(
            checked.identity.identifier
        ):
            # the certificate confirms the number; its CN is the name it names
            try:
                name = checked_name(checked.common_name or "")
            except InvalidName:
                self._refuse(user, checked, "no_name")
                raise CertificateRefused(NO_NAME, "no_name") from None
            document = DocumentClaim(
                number=checked.identity.identifier,
                kind=checked.identity.identifier_type,
                name=name,
                confirmed=True,
            )
        try:
            self._realname.record_verification(
                user,
                method=VerificationMethod.CERTIFICATE,
                level=5,
                source=f"{SOURCE_PREFIX}{checked.ca}",
                evidence_ref=checked.fingerprint,
                expires_at=checked.not_after,
                document=document,
                details={"ca": checked.ca},
            )
        except IdentityTaken:
            raise CertificateRefused(TAKEN, "identity_taken") from None
        except IdentityAlreadyVerified:
            raise CertificateRefused(OTHER_PERSON, "other_person") from None

    def _refuse(self, user: User | None, checked: CheckedCertificate, reason: str) -> None:
        self._audit.record(
            "pki.certificate_bound",
            FAILURE,
            subject=user.subject if user is not None else None,
            details={"ca": checked.ca, "reason": reason},
        )
        self._session.commit()

    def _now(self) -> datetime:
        return self._clock.now()
