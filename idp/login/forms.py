"""Sign-in forms. Field names are a contract (design.md section 8)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, Optional


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=1024)])


class OtpForm(FlaskForm):  # type: ignore[misc]
    otp = StringField(_l("One-time code"), validators=[InputRequired(), Length(max=32)])


class LogoutForm(FlaskForm):  # type: ignore[misc]
    pass


class ReauthForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=1024)])
    # asked for, and required, when the account has a second factor (the view says)
    otp = StringField(_l("One-time code"), validators=[Optional(), Length(max=32)])


class NewPasswordForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(_l("New password"), validators=[InputRequired(), Length(max=1024)])
    password_confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[InputRequired(), EqualTo("password", message=_l("The passwords differ."))],
    )


class HeldDeletionForm(FlaskForm):  # type: ignore[misc]
    pass
