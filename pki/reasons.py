"""Why a certificate is refused, in words a person can act on, in either language.

A ``Reason`` is the English sentence (a ``str``: the command line, the logs, the audit
log and the tests read it as before) that also carries its gettext msgid and
parameters, so a page can say it in the reader's language (``say``, in the views).
A parameter may be a ``Reason`` itself ("the certificate", "intermediate certificate
CN=..."); names, dates and technical detail (distinguished names, URLs, a responder's
own words) stay as they are. Nothing here imports Flask.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime


class Reason(str):
    """``msgid % params`` in English, with the msgid and params kept for translation."""

    msgid: str
    params: Mapping[str, str]

    def __new__(cls, msgid: str, **params: str) -> Reason:
        text = msgid % {key: str(value) for key, value in params.items()} if params else msgid
        made = super().__new__(cls, text)
        made.msgid = msgid
        made.params = params
        return made


THE_CERTIFICATE = "the certificate"


def certificate(name: str | None = None, *, anchor: bool = False) -> Reason:
    """How a reason names a certificate of the path: the leaf, or a CA by its name."""
    if name is None:
        return Reason("the certificate")
    if anchor:
        return Reason("trust anchor %(name)s", name=name)
    return Reason("intermediate certificate %(name)s", name=name)


def revoked(who: str, when: datetime, reason: str, source: str) -> Reason:
    """A revoked certificate of the path, ``source`` CRL or OCSP (``reason``: RFC 5280's
    name of the revocation reason)."""
    return Reason(
        "%(who)s was revoked on %(when)s UTC (%(reason)s) by %(source)s",
        who=who,
        when=f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
        reason=reason,
        source=source,
    )


def no_revocation_info(who: str, detail: str) -> Reason:
    return Reason(
        "no valid CRL or OCSP response for %(who)s (revocation mode require)%(detail)s",
        who=who,
        detail=detail,
    )


def revocation_unknown(who: str, detail: str) -> Reason:
    return Reason(
        "the revocation status of %(who)s cannot be established%(detail)s", who=who, detail=detail
    )
