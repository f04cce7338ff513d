"""A notice of every security change (issue 14, the personal page's sign-in security).

When a change to how an account signs in, or to what it proves, has committed (the
audit log's ``audit_committed``: the change is then true), the person is told by SMS
at the account's phone number: what changed and when, in the language of the page
they were on, and how to react ("This wasn't me" on the activity page). Never a code,
a secret, an address or a device. The message goes out once the change has committed,
while the answer is finished (``after_this_request``): the page waits for the gateway
at most its timeout, and never fails with it: a gateway that is down is logged
(without the number) and the change stands. An account without a phone number
has its activity page only.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, after_this_request, g, has_request_context
from flask_babel import gettext as _

from accounts.adapters.sms import SmsUnavailable
from accounts.container import Accounts
from accounts.errors import N_
from idp.core.audit.services import SUCCESS
from idp.core.runtime import Runtime

log = logging.getLogger(__name__)

# audit event -> the change, as the notice names it
NOTICES: dict[str, str] = {
    "password.change": N_("your password was changed"),
    "password.set": N_("a password was set"),
    "password.reset": N_("a new password was chosen"),
    "totp.enroll": N_("an authenticator app was set up"),
    "totp.disable": N_("the authenticator app was removed"),
    "recovery_codes.regenerate": N_("new recovery codes were made"),
    "federation.link": N_("sign-in through another platform was linked"),
    "federation.unlink": N_("sign-in through another platform was unlinked"),
    "pki.certificate_bound": N_("a digital certificate was bound"),
    "pki.certificate_unbound": N_("a digital certificate was unbound"),
    "account.not_me": N_("every session was ended after your report"),
    "account.delete_scheduled": N_("the account's deletion was requested"),
}
TEXT = N_(
    "Dongguan Unified Identity: %(change)s on your account at %(time)s UTC. If it was not "
    'you, sign in and choose "This wasn\'t me" under Activity, or call the hall.'
)
_PENDING = "security_notices"
_SUBJECT_PREFIX = "user:"


def on_audit_committed(name: str, *, outcome: str, subject: str | None, **_: Any) -> None:
    """A committed audit event: a notice is owed when it is a security change of a
    person's account (made in a web request)."""
    if outcome != SUCCESS or name not in NOTICES or not subject:
        return
    if not subject.startswith(_SUBJECT_PREFIX) or not has_request_context():
        return
    pending: list[tuple[str, str]] | None = g.get(_PENDING)
    if pending is None:
        pending = []
        setattr(g, _PENDING, pending)
        after_this_request(_send_pending)
    if (name, subject) not in pending:
        pending.append((name, subject))


def _send_pending(response: Response) -> Response:
    for name, subject in g.pop(_PENDING, []):
        try:
            _send(name, subject.removeprefix(_SUBJECT_PREFIX))
        except SmsUnavailable as exc:
            log.warning("security notice %s not sent: %s", name, exc)
        except Exception:  # a notice must never turn the change's answer into an error
            log.exception("security notice %s not sent", name)
    return response


def _send(name: str, public_id: str) -> None:
    accounts = Accounts.of()
    service = accounts.account_service()
    user = service.find_by_public_id(public_id)
    phone = service.phone_of(user) if user is not None else None
    if phone is None:
        return
    when = Runtime.of().clock.now().strftime("%Y-%m-%d %H:%M")
    accounts.sms.send(phone, _(TEXT, change=_(NOTICES[name]), time=when))
