"""Errors of the real-name verifications."""

from __future__ import annotations

from accounts.errors import N_, AccountError


class InvalidDocument(AccountError):
    default_message = N_("Enter the number of your identity document.")


class InvalidName(AccountError):
    default_message = N_("Enter your name as it appears on your identity document.")


class RegistryMismatch(AccountError):
    default_message = N_(
        "The name and document number do not match the population registry. "
        "Check both and try again."
    )


class RegistryDown(AccountError):
    default_message = N_(
        "The population registry cannot be reached just now. Your level is unchanged; "
        "please try again later."
    )


class IdentityTaken(AccountError):
    """Never says which account holds the number."""

    default_message = N_(
        "This document number is already verified for another account. If it is yours, "
        "sign in to that account, or visit a service counter."
    )


class VerificationConflict(AccountError):
    """The account's identity was written by another request while this one recorded."""

    default_message = N_("Your account changed while the code was checked. Please try again.")


class IdentityAlreadyVerified(AccountError):
    default_message = N_(
        "Your account is already verified with another document. To change it, visit a "
        "service counter."
    )


class OwnAccount(AccountError):
    default_message = N_("Staff cannot verify their own account. Ask a colleague to do it.")


class InvalidReference(AccountError):
    default_message = N_(
        "The reference (ticket or serial number) can have at most 100 characters, "
        "without line breaks."
    )
