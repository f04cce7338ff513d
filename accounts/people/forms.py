"""Forms of the account pages. Limits here only bound the input; the rules live in
the services."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import Email, EqualTo, InputRequired, Length, Optional


class RegisterForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=1024)])
    password_confirm = PasswordField(
        _l("Repeat the password"),
        validators=[InputRequired(), EqualTo("password", message=_l("The passwords differ."))],
    )
    phone = StringField(_l("Mobile number (optional)"), validators=[Optional(), Length(max=20)])


class PasswordChangeForm(FlaskForm):  # type: ignore[misc]
    current_password = PasswordField(
        _l("Current password"), validators=[InputRequired(), Length(max=1024)]
    )
    password = PasswordField(_l("New password"), validators=[InputRequired(), Length(max=1024)])
    password_confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[InputRequired(), EqualTo("password", message=_l("The passwords differ."))],
    )


class ProfileForm(FlaskForm):  # type: ignore[misc]
    display_name = StringField(_l("Display name"), validators=[Optional(), Length(max=64)])
    email = StringField(
        _l("E-mail address"),
        validators=[
            Optional(),
            Length(max=254),
            Email(message=_l("Enter an e-mail address such as name@example.cn.")),
        ],
    )


class DeleteAccountForm(FlaskForm):  # type: ignore[misc]
    confirm = BooleanField(
        _l("I understand that my account will be erased after the waiting period."),
        validators=[InputRequired(message=_l("Tick the box to confirm."))],
    )
