"""Account forms. Limits here only bound the input; the rules live in the services."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import PasswordField, StringField
from wtforms.validators import Email, EqualTo, InputRequired, Length, Optional


class RegisterForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=1024)])
    password_confirm = PasswordField(
        _l("Repeat the password"),
        validators=[InputRequired(), EqualTo("password", message=_l("The passwords differ."))],
    )
    phone = StringField(_l("Mobile number (optional)"), validators=[Optional(), Length(max=20)])


class TotpConfirmForm(FlaskForm):  # type: ignore[misc]
    otp = StringField(_l("Code from the app"), validators=[InputRequired(), Length(max=32)])


class PasswordConfirmForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(_l("Current password"), validators=[InputRequired(), Length(max=1024)])


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


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something: only the CSRF token."""


class RealNameForm(FlaskForm):  # type: ignore[misc]
    name = StringField(_l("Name on the document"), validators=[InputRequired(), Length(max=64)])
    id_number = StringField(
        _l("Identity document number"), validators=[InputRequired(), Length(max=32)]
    )


class PhoneCheckForm(FlaskForm):  # type: ignore[misc]
    """Real-name level 2: a self-declared identity and the phone that receives a code."""

    name = StringField(_l("Name on the document"), validators=[InputRequired(), Length(max=64)])
    id_number = StringField(
        _l("Identity document number"), validators=[InputRequired(), Length(max=32)]
    )
    phone = StringField(_l("Mobile number"), validators=[InputRequired(), Length(max=20)])


class PhoneCodeForm(FlaskForm):  # type: ignore[misc]
    otp = StringField(
        _l("Code from the text message"), validators=[InputRequired(), Length(max=32)]
    )


class FacePhotoForm(FlaskForm):  # type: ignore[misc]
    photo = FileField(_l("Photo of your face"), validators=[FileRequired(_l("Choose a photo."))])
