"""Forms of the credential pages."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import InputRequired, Length


class TotpConfirmForm(FlaskForm):  # type: ignore[misc]
    otp = StringField(_l("Code from the app"), validators=[InputRequired(), Length(max=32)])


class PasswordConfirmForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(_l("Current password"), validators=[InputRequired(), Length(max=1024)])
