"""Certificate sign-in through the bridge CA: the bridge and the registered local CAs
(``services``, ``models``), the certificates the bridge signs (``builder``, through a
``keys.BridgeKey``), RFC 5280 path validation, CRL/OCSP, identity extraction and the
certificate sign-in method. ``Pki`` (``pki.container``) holds the app-lifetime parts.
"""

from __future__ import annotations

from flask import Flask

from accounts.organisations.certificates import register_certificate_source
from idp.core.runtime import Runtime
from idp.core.signin import SignInMethods
from pki import views
from pki.cli import COMMANDS
from pki.container import Pki
from pki.organisations import organisation_certificates
from pki.revocation import RevocationChecker
from pki.signin import CertificateMethod

# CRLs kept by a worker: a few per registered CA (one per distribution point)
MAX_CACHED_CRLS = 4096


def init_app(app: Flask, core: Runtime, *, background: bool = False) -> Pki:
    """``background``: start the revocation checker's CRL refresh thread (a serving
    worker; commands and tests fetch on demand)."""
    pki = Pki(core, RevocationChecker(clock=core.clock, max_cached_crls=MAX_CACHED_CRLS))
    if background:
        pki.checker.start()
    pki.install(app)
    SignInMethods.of(app).register(CertificateMethod())
    views.init_app(app)
    register_certificate_source(app, organisation_certificates)
    for command in COMMANDS:
        app.cli.add_command(command)
    return pki
