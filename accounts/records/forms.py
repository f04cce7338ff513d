"""The holder's rating form (CSRF-protected)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]
from wtforms.validators import InputRequired

RATINGS = (
    ("5", _l("Very satisfied")),
    ("4", _l("Satisfied")),
    ("3", _l("Neither satisfied nor dissatisfied")),
    ("2", _l("Dissatisfied")),
    ("1", _l("Very dissatisfied")),
)


class RateForm(FlaskForm):  # type: ignore[misc]
    satisfaction = RadioField(
        _l("How satisfied are you with how this was handled?"),
        choices=[SelectChoice(value, label) for value, label in RATINGS],
        validators=[InputRequired()],
    )
