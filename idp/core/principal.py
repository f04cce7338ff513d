"""Who a signed-in session speaks for: the session principal.

A ``Principal`` is what the SSO session records once a sign-in completed: the account
(``uid``, the internal id, and ``sub``, its public id), when and how it signed in
(``auth_time``, ``amr``: RFC 8176 method references), the OpenID Connect session id
(``sid``), and, when the person acts for an organisation, under which authorisation
(``acting_for``; chosen after sign-in, used from the enterprise issue on).

It is kept in the server-side session as plain JSON values under the keys ``uid``,
``sub``, ``auth_time``, ``amr``, ``sid`` and (only when set) ``act``; other keys of the
session (the relying parties signed in through it, a pending second factor, the CSRF
token) are not the principal's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PRINCIPAL_KEYS = ("uid", "sub", "auth_time", "amr", "sid", "act")


@dataclass(frozen=True)
class ActingFor:
    """The person acts for an organisation under an authorisation (a mandate).

    ``as_subject``: the sign-in proved the organisation, not a person (an enterprise
    certificate alone): the services see the organisation as the subject, and no
    person as the actor."""

    organisation: str  # the organisation's public id
    authorisation: str  # the id of the authorisation that lets the person act for it
    as_subject: bool = False

    def to_session(self) -> dict[str, str | bool]:
        data: dict[str, str | bool] = {"org": self.organisation, "authz": self.authorisation}
        if self.as_subject:
            data["subj"] = True
        return data

    def subject_public_id(self, person_public_id: str) -> str:
        """The public id the services' ``sub`` is derived from."""
        return self.organisation if self.as_subject else person_public_id

    @classmethod
    def from_session(cls, value: object) -> ActingFor | None:
        if not isinstance(value, Mapping):
            return None
        organisation, authorisation = value.get("org"), value.get("authz")
        if not isinstance(organisation, str) or not isinstance(authorisation, str):
            return None
        return cls(organisation, authorisation, value.get("subj") is True)


@dataclass(frozen=True)
class Principal:
    uid: int
    sub: str
    auth_time: float
    amr: tuple[str, ...]
    sid: str
    acting_for: ActingFor | None = None

    @classmethod
    def signed_in(
        cls,
        *,
        uid: int,
        sub: str,
        auth_time: float,
        amr: Sequence[str],
        sid: str,
        acting_for: ActingFor | None = None,
    ) -> Principal:
        return cls(uid, sub, auth_time, tuple(amr), sid, acting_for)

    def to_session(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "uid": self.uid,
            "sub": self.sub,
            "auth_time": self.auth_time,
            "amr": list(self.amr),
            "sid": self.sid,
        }
        if self.acting_for is not None:
            data["act"] = self.acting_for.to_session()
        return data

    @classmethod
    def from_session(cls, data: Mapping[str, Any]) -> Principal | None:
        """The principal a session holds; None when nobody is signed in (or the
        session's values are not a principal's)."""
        uid, sub, sid = data.get("uid"), data.get("sub"), data.get("sid")
        auth_time, amr = data.get("auth_time"), data.get("amr", [])
        if not isinstance(uid, int) or isinstance(uid, bool):
            return None
        if not isinstance(sub, str) or not isinstance(sid, str):
            return None
        if not isinstance(auth_time, int | float) or isinstance(auth_time, bool):
            return None
        if not isinstance(amr, list) or not all(isinstance(value, str) for value in amr):
            return None
        return cls(
            uid, sub, float(auth_time), tuple(amr), sid, ActingFor.from_session(data.get("act"))
        )

    def acting(self, acting_for: ActingFor | None) -> Principal:
        """The same sign-in, acting for an organisation (or for oneself again)."""
        return Principal(self.uid, self.sub, self.auth_time, self.amr, self.sid, acting_for)
