"""Errors of the staff functions."""

from __future__ import annotations

from accounts.errors import N_, AccountError


class NotStaff(AccountError):
    default_message = N_(
        "Only government staff of a department can verify people at a service counter."
    )


class InvalidDepartment(AccountError):
    default_message = N_("Enter the department's name (at most 100 characters).")


class InvalidStaffRole(AccountError):
    default_message = N_(
        "A staff role is one of counter_verifier, level_administrator, client_administrator "
        "and statistics_viewer."
    )


class StaffNeedsRole(AccountError):
    default_message = N_("Your staff account does not have the %(role)s role.")


class StaffLevelTooLow(AccountError):
    default_message = N_(
        "Staff functions need your own identity verified to real-name level %(level)d or higher."
    )


class StaffNeedsSecondFactor(AccountError):
    default_message = N_(
        "Staff pages need a second factor: sign out, then sign in with your authenticator app."
    )


class InvalidKeptLevel(AccountError):
    default_message = N_("The level the account keeps is 1 to 4.")


class InvalidLowerReason(AccountError):
    default_message = N_("Give the reason on one line, in at most 200 characters.")


class OwnLevel(AccountError):
    default_message = N_("Staff cannot lower their own account's level. Ask a colleague to do it.")
