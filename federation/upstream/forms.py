"""Forms of the upstream sign-in pages (CSRF-protected buttons)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something: CSRF only."""

    next = HiddenField()
