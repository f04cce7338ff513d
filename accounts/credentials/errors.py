"""Errors of passwords, sign-in and the authenticator app."""

from __future__ import annotations

from accounts.errors import N_, AccountError


class WeakPassword(AccountError):
    pass


class InvalidCredentials(AccountError):
    """Wrong username or password (never says which)."""

    default_message = N_("The username or password is incorrect.")


class InvalidOtp(AccountError):
    default_message = N_("That code is not valid. Enter the current code from your app.")


class TotpAlreadyEnrolled(AccountError):
    default_message = N_("An authenticator app is already set up for this account.")


class NoPendingEnrollment(AccountError):
    default_message = N_("Start the set-up again: the pending set-up has expired.")
