"""The enterprise page's certificates, through a hook.

Enterprise certificates are pki's (``pki_certificate_bindings`` rows with an
``organisation_id``), and accounts may not import pki: the layering puts pki above
accounts. So the page asks whoever registered a ``CertificateSource`` on the app (pki
does, in its ``init_app``) for a plain summary of the organisation's certificates. With
no source registered (an app without pki) the page shows none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flask import Flask

EXTENSION = "accounts.organisation_certificates"


@dataclass(frozen=True)
class OrganisationCertificate:
    """What the page shows of one certificate: nothing unmasked."""

    ca_name: str
    serial: str  # hex
    identifier_masked: str
    not_after: datetime
    last_used_at: datetime | None


class CertificateSource(Protocol):
    def __call__(self, organisation_id: int) -> Sequence[OrganisationCertificate]: ...


def register_certificate_source(app: Flask, source: CertificateSource) -> None:
    app.extensions.setdefault(EXTENSION, []).append(source)


def certificates_of(app: Flask, organisation_id: int) -> list[OrganisationCertificate]:
    sources: list[CertificateSource] = app.extensions.get(EXTENSION, [])
    return [certificate for source in sources for certificate in source(organisation_id)]
