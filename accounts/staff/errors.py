"""Errors of the staff functions."""

from __future__ import annotations

from accounts.errors import N_, AccountError


class NotStaff(AccountError):
    default_message = N_(
        "Only government staff of a department can verify people at a service counter."
    )


class InvalidDepartment(AccountError):
    default_message = N_("Enter the department's name (at most 100 characters).")
