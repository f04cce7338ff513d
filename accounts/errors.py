"""Domain errors of the accounts package.

Messages are English msgids marked with ``N_`` for extraction; the HTTP layer
translates them (``gettext(error.message, **error.params)``). Services stay free of
Flask imports.
"""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark a string for translation without translating it here."""
    return message


class AccountError(Exception):
    """Base class: ``message`` (a msgid) and ``params`` are safe to show to the user."""

    default_message = N_("The request could not be completed.")

    def __init__(self, message: str | None = None, **params: Any) -> None:
        self.message = message or self.default_message
        self.params = params
        super().__init__(self.message % params if params else self.message)
