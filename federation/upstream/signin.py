"""Upstream providers as a first factor of the sign-in flow (``idp.core.signin``): one
method, ``federation``, with one link per upstream on the sign-in page (upstreams
added by the command line appear without a restart). Its ``Proof`` says ``fed``, and
``mfa`` when the upstream said its sign-in was multi-factor (decision 25's table)."""

from __future__ import annotations

from collections.abc import Sequence

from flask import url_for
from flask_babel import gettext as _

from federation.upstream.container import Upstreams
from federation.upstream.logout import logout_redirect, remember
from idp.core.signin import Cookie, Link, Proof, Stage

FEDERATION = "federation"
FED = "fed"
MFA = "mfa"


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    return message


def amr_of(upstream_amr: Sequence[str]) -> tuple[str, ...]:
    return (FED, MFA) if MFA in upstream_amr else (FED,)


class UpstreamMethod:
    name = FEDERATION
    stage = Stage.FIRST
    amr = frozenset({FED, MFA})
    label = N_("Sign in with another identity platform")

    def entry(self, next_url: str) -> str | None:  # noqa: ARG002 - the interface's signature
        return None  # several: see entries

    def entries(self, next_url: str) -> Sequence[Link]:
        return [
            Link(
                _("Sign in with %(name)s", name=label),
                url_for("federation_upstream.start", name=name, next=next_url),
            )
            for name, label in Upstreams.of().labels().items()
        ]

    def applies(self, first: Proof) -> bool:  # noqa: ARG002 - the interface's signature
        return False  # a first factor only

    def sign_out_redirect(self, final_url: str | None) -> str | None:
        return logout_redirect(final_url)

    def finished(self, proof: Proof) -> Sequence[Cookie]:
        remember(proof.state)  # the upstream session, for single logout
        return ()
