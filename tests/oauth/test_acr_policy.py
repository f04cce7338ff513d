"""The acr policy: the table from a sign-in's amr to its strength, and the acr values
it satisfies with the account's real-name level (idp.oauth.assurance)."""

from __future__ import annotations

import pytest

from idp.oauth.assurance import AcrPolicy, Strength, strength_of

PWD = "urn:dongguan:idp:acr:pwd"
MFA = "urn:dongguan:idp:acr:mfa"
PREFIX = "urn:dongguan:idp:acr:level"
POLICY = AcrPolicy(PWD, MFA, PREFIX)


@pytest.mark.parametrize(
    ("amr", "strength"),
    [
        # today's sign-ins
        (["pwd"], Strength.PASSWORD),
        (["pwd", "otp", "mfa"], Strength.MFA),
        (["pwd", "otp"], Strength.MFA),  # sessions from before "mfa" was added
        ([], Strength.PASSWORD),
        # a certificate on a hardware key or smart card, with or without its PIN
        (["hwk"], Strength.MFA),
        (["sc"], Strength.MFA),
        (["hwk", "pin", "mfa"], Strength.MFA),
        (["sc", "pin", "mfa"], Strength.MFA),
        # an upstream provider: what it said, at most
        (["fed"], Strength.PASSWORD),
        (["fed", "otp"], Strength.PASSWORD),
        (["fed", "hwk"], Strength.PASSWORD),
        (["fed", "mfa"], Strength.MFA),
        # a second factor after any first one is multi-factor
        (["fed", "otp", "mfa"], Strength.MFA),
        (["hwk", "otp", "mfa"], Strength.MFA),
        # values that prove nothing more than a password
        (["pin"], Strength.PASSWORD),
        (["unknown"], Strength.PASSWORD),
    ],
)
def test_the_strength_table(amr: list[str], strength: Strength) -> None:
    assert strength_of(amr) is strength
    assert POLICY.strength(amr) == (MFA if strength is Strength.MFA else PWD)


def test_the_password_value_is_satisfied_by_every_sign_in() -> None:
    for amr in (["pwd"], ["fed"], ["hwk"], ["pwd", "otp", "mfa"]):
        assert POLICY.satisfied(PWD, amr, level=1)


def test_the_mfa_value_follows_the_table() -> None:
    assert POLICY.satisfied(MFA, ["pwd", "otp", "mfa"], level=1)
    assert POLICY.satisfied(MFA, ["hwk", "pin", "mfa"], level=1)
    assert not POLICY.satisfied(MFA, ["pwd"], level=5)
    assert not POLICY.satisfied(MFA, ["fed"], level=5)


def test_level_values_follow_the_real_name_level_not_the_amr() -> None:
    assert POLICY.satisfied(f"{PREFIX}3", ["pwd"], level=3)
    assert POLICY.satisfied(f"{PREFIX}3", ["pwd"], level=4)
    assert not POLICY.satisfied(f"{PREFIX}4", ["hwk", "pin", "mfa"], level=3)
    assert not POLICY.satisfied(f"{PREFIX}9", ["pwd"], level=5)
    assert not POLICY.satisfied("urn:other", ["pwd", "otp", "mfa"], level=5)


def test_the_achieved_acr_is_the_first_satisfied_request_else_the_strength() -> None:
    assert POLICY.achieved([], ["pwd"], 1) == PWD
    assert POLICY.achieved([], ["pwd", "otp", "mfa"], 1) == MFA
    assert POLICY.achieved([], ["hwk", "pin", "mfa"], 1) == MFA
    assert POLICY.achieved([MFA, f"{PREFIX}3"], ["pwd"], 3) == f"{PREFIX}3"
    assert POLICY.achieved([MFA, f"{PREFIX}3"], ["sc"], 3) == MFA
    assert POLICY.achieved([f"{PREFIX}4"], ["fed", "mfa"], 3) == MFA  # visible, not hidden


def test_the_supported_values() -> None:
    assert POLICY.supported() == [PWD, MFA, *(f"{PREFIX}{n}" for n in (2, 3, 4, 5))]
    assert POLICY.level_of(f"{PREFIX}5") == 5
    assert POLICY.level_of(f"{PREFIX}1") is None
    assert POLICY.level_of(MFA) is None
