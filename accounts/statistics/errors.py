"""Errors of the hall's statistics: a query the service refuses (the pages answer 400)."""

from __future__ import annotations

from accounts.errors import N_, AccountError


class InvalidStatisticsQuery(AccountError):
    """A refused query; ``field`` names the parameter."""

    field = ""


class InvalidMonth(InvalidStatisticsQuery):
    default_message = N_("A month is written YYYY-MM, for example 2026-03.")

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field


class InvalidMonthRange(InvalidStatisticsQuery):
    default_message = N_(
        "The first month must not come after the last, and a range spans at most %(months)d months."
    )
    field = "from"


class InvalidService(InvalidStatisticsQuery):
    default_message = N_("A service is named by its item code (at most 64 characters).")
    field = "service"
