"""The account's activity history: its sign-ins, level changes and security changes,
read from the audit log (``idp.core.audit``) and named for people, not by event code.

``ActivityService`` pages through the events whose subject is the account (newest
first, by sequence number) and turns each into an ``Activity``: a gettext-marked label
(the page translates it), the outcome, time, client address and, for a sign-in, the
browser recorded then. ``reportable`` says which of them a "This wasn't me" report may
name (``AccountService.report_not_me``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts.errors import N_
from accounts.people.models import User
from idp.core.audit.models import AuditEvent
from idp.core.audit.services import SUCCESS, AuditLog
from idp.core.devices import Device

PAGE_SIZE = 20

# event -> what the holder sees (success); events not listed are not shown
LABELS: dict[str, str] = {
    "account.register": N_("Account created"),
    "signin": N_("Signed in"),
    "signin.password": N_("Sign-in with your password"),
    "signin.otp": N_("Sign-in with a one-time code"),
    "signin.reauth": N_("Password confirmed for a sensitive change"),
    "signout": N_("Signed out"),
    "password.change": N_("Password changed"),
    "password.set": N_("Password set"),
    "password.reset": N_("New password chosen after a report"),
    "totp.enroll": N_("Authenticator app set up"),
    "totp.disable": N_("Authenticator app removed"),
    "recovery_codes.regenerate": N_("New recovery codes made"),
    "recovery_code.use": N_("Recovery code used"),
    "realname.verify": N_("Real-name verification recorded"),
    "realname.lower": N_("Real-name level lowered"),
    "realname.expire": N_("Real-name verification expired"),
    "federation.link": N_("Sign-in through another platform linked"),
    "federation.unlink": N_("Sign-in through another platform unlinked"),
    "pki.certificate_bound": N_("Digital certificate bound"),
    "pki.certificate_unbound": N_("Digital certificate unbound"),
    "consent.withdraw": N_("Access of a service withdrawn"),
    "session.end": N_("A session signed out from the sessions page"),
    "session.end_others": N_("Signed out everywhere else"),
    "session.end_all": N_("Signed out everywhere"),
    "account.not_me": N_("Reported as not done by you: every session ended"),
    "account.status": N_("Account status changed by an administrator"),
    "account.delete_scheduled": N_("Account deletion requested"),
    "account.delete_cancelled": N_("Account deletion cancelled"),
}
# a failure or refusal of these reads differently
FAILURE_LABELS: dict[str, str] = {
    "signin.password": N_("Failed sign-in: wrong password"),
    "signin.otp": N_("Failed sign-in: wrong one-time code"),
    "password.change": N_("Password change refused: wrong current password"),
    "totp.enroll": N_("Authenticator app set-up failed"),
    "realname.verify": N_("Real-name verification refused"),
}
# what a "This wasn't me" report may name: a sign-in or a change to how the account
# signs in or what it proves
REPORTABLE = frozenset(
    {
        "signin",
        "signin.password",
        "signin.otp",
        "signin.reauth",
        "password.change",
        "password.set",
        "totp.enroll",
        "totp.disable",
        "recovery_codes.regenerate",
        "recovery_code.use",
        "realname.verify",
        "federation.link",
        "federation.unlink",
        "pki.certificate_bound",
        "pki.certificate_unbound",
        "consent.withdraw",
        "session.end",
        "session.end_others",
        "account.delete_scheduled",
    }
)


@dataclass(frozen=True)
class Activity:
    seq: int
    at: datetime
    label: str  # gettext-marked, untranslated
    succeeded: bool
    address: str | None
    device: Device | None
    level: int | None  # a verification's level, when the event names one
    reportable: bool


@dataclass(frozen=True)
class ActivityPage:
    entries: list[Activity]
    older: int | None  # the ``before`` of the next page, None on the last


def reportable(event: AuditEvent, user: User) -> bool:
    return event.subject == user.subject and event.event in REPORTABLE


def _level(details: dict[str, Any]) -> int | None:
    level = details.get("level")
    return level if isinstance(level, int) and not isinstance(level, bool) else None


def _activity(event: AuditEvent, user: User) -> Activity:
    succeeded = event.outcome == SUCCESS
    label = (
        LABELS[event.event] if succeeded else FAILURE_LABELS.get(event.event, LABELS[event.event])
    )
    device = event.details.get("device")
    return Activity(
        seq=event.seq,
        at=event.created_at,
        label=label,
        succeeded=succeeded,
        address=event.client_ip,
        device=Device.from_json(device) if device is not None else None,
        level=_level(event.details) if event.event.startswith("realname.") else None,
        reportable=reportable(event, user),
    )


class ActivityService:
    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def page(self, user: User, *, before: int | None = None) -> ActivityPage:
        rows = self._audit.history(
            subject=user.subject, events=LABELS, before=before, limit=PAGE_SIZE + 1
        )
        entries = [_activity(row, user) for row in rows[:PAGE_SIZE]]
        older = entries[-1].seq if len(rows) > PAGE_SIZE else None
        return ActivityPage(entries, older)

    def event(self, user: User, seq: int) -> AuditEvent | None:
        """The account's own event with that number (None: none, or someone else's)."""
        found = self._audit.find(seq)
        if found is None or found.subject != user.subject:
            return None
        return found
