"""acr values (design.md section 5; the table and its reasons are in
``idp.oauth.assurance``'s docstring): ``AcrPolicy`` (the configured URIs and what a
sign-in satisfies) and ``ClientLevels`` (a client's own vocabulary for our levels,
issue 13). Flask-free, so the token service can use it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from config import Settings
from idp.oauth.clients import ClientInfo

LEVELS = (2, 3, 4, 5)


class Strength(enum.Enum):
    PASSWORD = "password"
    MFA = "mfa"


# (any of these amr values, the strength): the first row with a value in the sign-in's
# amr wins; no row: PASSWORD (the module's docstring has the table with its reasons)
STRENGTH_TABLE: tuple[tuple[frozenset[str], Strength], ...] = (
    (frozenset({"mfa"}), Strength.MFA),
    (frozenset({"fed"}), Strength.PASSWORD),
    (frozenset({"otp"}), Strength.MFA),
    (frozenset({"hwk", "sc"}), Strength.MFA),
)


def strength_of(amr: Sequence[str]) -> Strength:
    """The authentication strength of a sign-in's ``amr`` (``STRENGTH_TABLE``)."""
    values = set(amr)
    for any_of, strength in STRENGTH_TABLE:
        if values & any_of:
            return strength
    return Strength.PASSWORD


@dataclass(frozen=True)
class AcrPolicy:
    """The acr URIs, and which of them a sign-in (its amr) and an account's real-name
    level satisfy."""

    password: str
    mfa: str
    level_prefix: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AcrPolicy:
        return cls(settings.acr_password, settings.acr_mfa, settings.acr_level_prefix)

    def for_level(self, level: int) -> str:
        return f"{self.level_prefix}{level}"

    def level_of(self, value: str) -> int | None:
        """The real-name level an acr value stands for, if it stands for one."""
        if not value.startswith(self.level_prefix):
            return None
        rest = value[len(self.level_prefix) :]
        return int(rest) if rest in {str(level) for level in LEVELS} else None

    def supported(self) -> list[str]:
        return [self.password, self.mfa, *(self.for_level(level) for level in LEVELS)]

    def strength(self, amr: Sequence[str]) -> str:
        """The acr of the sign-in's strength: ``acr_mfa`` or ``acr_password``."""
        return self.mfa if strength_of(amr) is Strength.MFA else self.password

    def satisfied(self, value: str, amr: Sequence[str], level: int) -> bool:
        if value == self.password:
            return True
        if value == self.mfa:
            return strength_of(amr) is Strength.MFA
        wanted = self.level_of(value)
        return wanted is not None and level >= wanted

    def achieved(self, requested: Sequence[str], amr: Sequence[str], level: int) -> str:
        """The acr to put in the tokens: the first requested value satisfied, else the
        authentication strength (so a lower result is visible, never hidden)."""
        for value in requested:
            if self.satisfied(value, amr, level):
                return value
        return self.strength(amr)


@dataclass(frozen=True)
class ClientLevels:
    """A client's own vocabulary for our real-name levels (its level map, issue 13; a
    peer such as the provincial hall registered as a client). What the client
    receives is translated into it: ``acr`` (a level value by its level; the strength
    values, ``acr_password`` and ``acr_mfa``, which claim no real-name level, by the
    value for level 1) and ``verified_claims``'s ``assurance_level``. What it asks
    (``acr_values``, an essential ``acr`` claim) is read back into ours, so the
    decision, the grant and the access tokens only ever hold our values. Values
    outside the map pass through unchanged (decision 37)."""

    policy: AcrPolicy
    theirs: dict[int, str]

    @classmethod
    def of(cls, policy: AcrPolicy, client: ClientInfo) -> ClientLevels:
        return cls(policy, dict(client.level_map))

    def to_client(self, acr: str) -> str:
        """Our acr value in the client's vocabulary."""
        if not self.theirs:
            return acr
        level = self.policy.level_of(acr)
        if level is None and acr in (self.policy.password, self.policy.mfa):
            level = 1
        return self.theirs.get(level, acr) if level is not None else acr

    def from_client(self, values: Sequence[str]) -> list[str]:
        """The client's acr values in ours (level 1: ``acr_password``)."""
        if not self.theirs:
            return list(values)
        ours = {theirs: level for level, theirs in self.theirs.items()}
        result: list[str] = []
        for value in values:
            level = ours.get(value)
            if level is None:
                result.append(value)
            else:
                result.append(self.policy.password if level == 1 else self.policy.for_level(level))
        return result

    def assurance_level(self, level: int) -> str:
        """``verified_claims.verification.assurance_level`` for our level."""
        return self.theirs.get(level, str(level))
