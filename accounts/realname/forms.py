"""Forms of the real-name pages. Limits here only bound the input; the rules live in
the services."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import StringField
from wtforms.validators import InputRequired, Length


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
