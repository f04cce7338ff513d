"""Certificate sign-in forms. The field names ``challenge``, ``certificate`` and
``signature`` are a contract (design.md section 8): drivers and scripts post them."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length

MAX_CERTIFICATE_TEXT = 64 * 1024


class CertificateLoginForm(FlaskForm):  # type: ignore[misc]
    challenge = HiddenField(validators=[InputRequired(), Length(max=128)])
    certificate = TextAreaField(
        _l("Certificate (PEM)"), validators=[InputRequired(), Length(max=MAX_CERTIFICATE_TEXT)]
    )
    signature = TextAreaField(
        _l("Signature (base64)"), validators=[InputRequired(), Length(max=4096)]
    )
    next = HiddenField()


class NewAccountForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=1024)])
    next = HiddenField()


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something: CSRF only."""

    next = HiddenField()
