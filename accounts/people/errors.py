"""Errors of the account lifecycle."""

from __future__ import annotations

from accounts.errors import N_, AccountError


class InvalidUsername(AccountError):
    pass


class UsernameTaken(AccountError):
    default_message = N_("That username is taken. Please choose another.")


class InvalidProfile(AccountError):
    default_message = N_("The profile could not be saved.")


class InvalidPhone(AccountError):
    default_message = N_("Enter an 11-digit mainland mobile number, or leave it empty.")


class AccountDisabled(AccountError):
    default_message = N_("The username or password is incorrect.")
