"""Password rules (NIST SP 800-63B 5.1.1) and Argon2id hashing.

Rules: at least 8 characters, up to 256 accepted (NIST asks for at least 64), no
composition rules, any printable Unicode (NFKC-normalised before hashing), refused
when it is a commonly used password, the username, or one character repeated.
"""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from accounts.credentials.errors import WeakPassword
from accounts.errors import N_

MIN_LENGTH = 8
MAX_LENGTH = 256
DATA = Path(__file__).resolve().parent / "data"


@cache
def common_passwords() -> frozenset[str]:
    """Django's list of 20,000 common passwords plus a list for this service's users."""
    with gzip.open(DATA / "common-passwords.txt.gz", "rt", encoding="utf-8") as handle:
        words = {line.strip() for line in handle}
    extra = (DATA / "common-passwords-zh.txt").read_text(encoding="utf-8").splitlines()
    words.update(line.strip() for line in extra if line and not line.startswith("#"))
    words.discard("")
    return frozenset(words)


def normalise_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def check_password_rules(password: str, *, username: str | None = None) -> None:
    """Raise ``WeakPassword`` naming the rule that failed."""
    normalised = normalise_password(password)
    if len(normalised) < MIN_LENGTH:
        raise WeakPassword(N_("Use at least %(min)d characters."), min=MIN_LENGTH)
    if len(normalised) > MAX_LENGTH:
        raise WeakPassword(N_("Use at most %(max)d characters."), max=MAX_LENGTH)
    if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in normalised):
        raise WeakPassword(N_("The password contains characters that cannot be typed."))
    lowered = normalised.casefold()
    if len(set(lowered)) == 1:
        raise WeakPassword(N_("Do not repeat one character."))
    if username and lowered == unicodedata.normalize("NFKC", username).casefold():
        raise WeakPassword(N_("The password must not be your username."))
    if lowered in common_passwords():
        raise WeakPassword(
            N_("This password is one of the most commonly used ones. Choose another.")
        )


class PasswordHasher:
    """Argon2id with parameters from settings; old hashes are upgraded on sign-in."""

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(normalise_password(password))

    def verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, normalise_password(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def burn(self, password: str) -> None:
        """Spend the same time as a verification (for unknown accounts: no enumeration)."""
        if self._dummy is None:
            self._dummy = self.hash("dummy password for timing")
        self.verify(self._dummy, password)
