"""What the account pages share: the CSRF-only action form, the signed-in user and
the message of a domain error."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_wtf import FlaskForm

from accounts.errors import AccountError
from accounts.people.models import User
from accounts.people.session import current_user


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something: only the CSRF token."""


def error_message(error: AccountError) -> str:
    return str(_(error.message, **error.params))


def signed_in_user() -> User:
    user = current_user()
    assert user is not None  # login_required ran first
    return user
