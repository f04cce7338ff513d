"""The sign-in flow: from a proved first factor to a signed-in session.

``LoginFlow`` is the app's ``idp.core.signin.SignInFlow``: the ``/login`` pages call it
for the form-driven methods, and the views of other methods (certificate, upstream
provider) call it through ``SignInMethods.of().flow`` with what they proved.

* ``proved``: a first factor is proved. If a registered second factor applies (and the
  first factor is not multi-factor already), the session records a pending sign-in
  (``pending``: what the first factor proved, which second factor is due, where to go
  next) for ``PENDING_TTL`` seconds and the browser goes to the second factor's page;
  otherwise the sign-in finishes.
* ``finish``: the session starts with the achieved ``amr`` (``idp.core.signin.
  achieved_amr``), the ``signin`` audit event (the amr, the methods used, the
  account's real-name level) is committed and counted
  (``idp_signins{step="complete",outcome="success"}``), and each method's cookies are
  set on the redirect to ``next``.
* ``held``: an account whose holder asked for its deletion, or reported "This wasn't
  me", does not start a session at once: what was proved waits in the session
  (``HELD_TTL``) while ``/login/deletion`` offers to cancel the deletion and
  ``/login/new-password`` asks for a new password; ``release`` then finishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import redirect, session, url_for
from werkzeug.wrappers import Response

from accounts.container import Accounts
from idp.core.metrics import SIGNINS
from idp.core.navigation import safe_next
from idp.core.runtime import Runtime, audit_log, db
from idp.core.sessions import DEVICE, complete_sign_in
from idp.core.signin import Proof, SignInMethods, achieved_amr

PENDING_TTL = 5 * 60
_PENDING = "pending"
HELD_TTL = 10 * 60
_HELD = "held"
# what holds a sign-in back, in the order asked: the page that resolves it
DELETION = "deletion"
NEW_PASSWORD = "new_password"


@dataclass(frozen=True)
class Pending:
    """A sign-in waiting for its second factor."""

    first: Proof
    second: str  # the name of the second factor's method
    next_url: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first.to_json(),
            "second": self.second,
            "next": self.next_url,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pending:
        return cls(
            first=Proof.from_json(data["first"]),
            second=str(data["second"]),
            next_url=str(data["next"]),
            at=float(data["at"]),
        )


def _level_of(uid: int) -> int | None:
    accounts = Accounts.of()
    user = accounts.account_service().get(uid)
    return None if user is None else accounts.realname_service().level(user)


def _now() -> float:
    return Runtime.of().clock.now().timestamp()


class LoginFlow:
    def count(self, step: str, outcome: str) -> None:
        SIGNINS.labels(step, outcome).inc()

    def proved(self, proof: Proof, next_url: str) -> Response:
        second = SignInMethods.of().second_factor_for(proof)
        if second is None:
            return self.finish([proof], next_url)
        session[_PENDING] = Pending(proof, second.name, next_url, _now()).to_json()
        return redirect(second.entry(next_url) or url_for("login.otp"))

    def pending(self) -> Pending | None:
        """The sign-in waiting for a second factor, unless it expired."""
        raw = session.get(_PENDING)
        if not isinstance(raw, dict):
            return None
        try:
            pending = Pending.from_json(raw)
        except (KeyError, TypeError, ValueError):
            pending = None
        if pending is None or _now() - pending.at > PENDING_TTL:
            session.pop(_PENDING, None)
            return None
        return pending

    def second_factor_proved(self, pending: Pending, proof: Proof) -> Response:
        if proof.uid != pending.first.uid:
            # a method's bug, never the user's input: the second factor must confirm the
            # account the first one found
            session.pop(_PENDING, None)
            raise RuntimeError(f"the {proof.method} method proved another account")
        return self.finish([pending.first, proof], pending.next_url)

    def finish(self, proofs: Sequence[Proof], next_url: str) -> Response:
        hold = self._hold_for(proofs[0].uid)
        if hold is not None:
            session.pop(_PENDING, None)
            session[_HELD] = {
                "proofs": [proof.to_json() for proof in proofs],
                "next": next_url,
                "at": _now(),
            }
            return redirect(
                url_for("login.held_deletion" if hold == DELETION else "login.held_password")
            )
        return self._complete(proofs, next_url)

    def _hold_for(self, uid: int) -> str | None:
        user = Accounts.of().account_service().get(uid)
        if user is None:
            return None
        if user.deletion_due_at is not None:
            return DELETION
        if user.password_reset_required:
            return NEW_PASSWORD
        return None

    def held(self) -> tuple[list[Proof], str] | None:
        """The proved sign-in waiting for its account's question, unless it expired."""
        raw: Any = session.get(_HELD)
        try:
            proofs = [Proof.from_json(item) for item in raw["proofs"]]
            next_url, at = str(raw["next"]), float(raw["at"])
        except (KeyError, TypeError, ValueError):
            proofs, next_url, at = [], "", 0.0
        if not proofs or _now() - at > HELD_TTL:
            session.pop(_HELD, None)
            return None
        return proofs, next_url

    def drop_held(self) -> None:
        session.pop(_HELD, None)

    def release(self) -> Response:
        """The account's question was answered: ask the next one, or finish."""
        held = self.held()
        if held is None:
            return redirect(url_for("login.login"))
        session.pop(_HELD, None)
        return self.finish(*held)

    def _complete(self, proofs: Sequence[Proof], next_url: str) -> Response:
        amr = achieved_amr(proofs)
        first = proofs[0]
        complete_sign_in(first.uid, first.sub, amr, acting_for=first.acting_for)
        # the methods and the account's real-name level now: the hall's statistics
        # count sign-ins by both (decision 46)
        details: dict[str, object] = {
            "amr": amr,
            "method": "+".join(proof.method for proof in proofs),
            "level": _level_of(first.uid),
        }
        device = session.get(DEVICE)
        if isinstance(device, list) and any(device):
            details["device"] = device  # the browser and system, for the activity page
        if first.acting_for is not None:
            details["org"] = first.acting_for.organisation
        audit_log().record("signin", subject=first.subject, details=details)
        db().commit()
        self.count("complete", "success")
        response = redirect(safe_next(next_url))
        methods = SignInMethods.of()
        for proof in proofs:
            method = methods.get(proof.method)
            for cookie in method.finished(proof) if method is not None else ():
                response.set_cookie(
                    cookie.name,
                    cookie.value,
                    max_age=cookie.max_age,
                    path=cookie.path,
                    secure=cookie.secure,
                    httponly=cookie.httponly,
                    samesite=cookie.samesite,
                )
        return response
