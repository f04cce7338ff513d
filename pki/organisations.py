"""The enterprise page's certificates: pki answers the hook accounts defines
(``accounts.organisations.certificates``), since accounts may not import pki."""

from __future__ import annotations

from sqlalchemy import select

from accounts.organisations.certificates import OrganisationCertificate
from idp.core.runtime import db
from pki.models import CertificateBinding

MAX_LISTED = 200


def organisation_certificates(organisation_id: int) -> list[OrganisationCertificate]:
    """The certificates bound to the organisation, newest first (masked identifiers)."""
    rows = db().scalars(
        select(CertificateBinding)
        .where(CertificateBinding.organisation_id == organisation_id)
        .order_by(CertificateBinding.created_at.desc(), CertificateBinding.id.desc())
        .limit(MAX_LISTED)
    )
    return [
        OrganisationCertificate(
            ca_name=row.ca_name,
            serial=row.serial,
            identifier_masked=row.identifier_masked,
            not_after=row.not_after,
            last_used_at=row.last_used_at,
        )
        for row in rows
    ]
