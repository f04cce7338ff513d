"""Forms of the organisation pages. Limits here only bound the input; the rules (who may
claim, who may add an agent, valid dates) live in ``AuthorisationService``."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, RadioField, StringField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]
from wtforms.validators import InputRequired, Length, Optional, ValidationError

MAX_NAMED = 20  # clients or scopes one authorisation names
_NAMES = re.compile(r"[\s,，]+")  # noqa: RUF001 - the Chinese comma separates too
_NAME = re.compile(r"[A-Za-z0-9._:/-]{1,64}")


def split_names(raw: str | None) -> list[str]:
    """Client ids or scopes typed one after the other, separated by spaces or commas."""
    return [name for name in _NAMES.split(raw or "") if name]


def _names(_form: FlaskForm, field: StringField) -> None:
    names = split_names(field.data)
    if len(names) > MAX_NAMED:
        raise ValidationError(_l("Name at most %(num)d.", num=MAX_NAMED))
    if any(not _NAME.fullmatch(name) for name in names):
        raise ValidationError(
            _l("Use letters, digits and . _ : / - only, separated by spaces or commas.")
        )


class ClaimForm(FlaskForm):  # type: ignore[misc]
    uscc = StringField(
        _l("Unified social credit code"), validators=[InputRequired(), Length(max=32)]
    )
    name = StringField(
        _l("Registered name of the organisation"), validators=[InputRequired(), Length(max=200)]
    )


class AgentForm(FlaskForm):  # type: ignore[misc]
    """An administrator adds an agent: who (an account, or a document number matched
    when they confirm), for which services, and from when until when (days, UTC)."""

    by = RadioField(
        _l("Find the person by"),
        choices=[
            SelectChoice("username", _l("Their username")),
            SelectChoice("document", _l("Their identity document number")),
        ],
        default="username",
        validators=[InputRequired()],
    )
    invitee = StringField(
        _l("Username or document number"), validators=[InputRequired(), Length(max=64)]
    )
    role = RadioField(
        _l("Role"),
        choices=[
            SelectChoice("agent", _l("Agent: acts within the services named")),
            SelectChoice(
                "administrator",
                _l("Administrator: also adds and revokes agents (the legal representative only)"),
            ),
        ],
        default="agent",
        validators=[Optional()],  # not sent: an agent
    )
    scope = RadioField(
        _l("Services"),
        choices=[
            SelectChoice("all", _l("All services")),
            SelectChoice("named", _l("Only the services named below")),
        ],
        default="all",
        validators=[InputRequired()],
    )
    clients = StringField(
        _l("Client ids of the services"), validators=[Optional(), Length(max=1400), _names]
    )
    scopes = StringField(
        _l("Only these scopes (optional)"), validators=[Optional(), Length(max=1400), _names]
    )
    starts_on = DateField(_l("From (optional)"), validators=[Optional()])
    ends_on = DateField(_l("Until (optional)"), validators=[Optional()])
