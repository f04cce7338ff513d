"""Certificate sign-in as a first factor of the sign-in flow (``idp.core.signin``).

Two ways in, one method: challenge signing with a USB key (``/login/certificate``,
``amr`` ``hwk`` and ``sc``: a key held in hardware, a smart card) and mutual TLS at the
reverse proxy (``/login/certificate/tls``, ``amr`` ``hwk``: the proxy cannot tell us the
key is on a card). The USB key's PIN is asked by its driver, which the platform cannot
see, so neither way claims ``mfa``: an account with a one-time code still asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import url_for

from idp.core.signin import Cookie, Proof, Stage

CERTIFICATE = "certificate"
CHALLENGE_AMR = ("hwk", "sc")
TLS_AMR = ("hwk",)


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    return message


class CertificateMethod:
    name = CERTIFICATE
    stage = Stage.FIRST
    amr = frozenset({*CHALLENGE_AMR, *TLS_AMR})
    label = N_("Sign in with a digital certificate (USB key)")

    def entry(self, next_url: str) -> str | None:
        return url_for("pki.certificate_login", next=next_url)

    def applies(self, first: Proof) -> bool:  # noqa: ARG002 - the interface's signature
        return False  # a first factor only

    def finished(self, proof: Proof) -> Sequence[Cookie]:  # noqa: ARG002 - the interface's signature
        return ()
