from __future__ import annotations

import pytest

from accounts.credentials.errors import WeakPassword
from accounts.credentials.passwords import PasswordHasher, check_password_rules, common_passwords


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short1!", "at least 8"),
        ("x" * 257, "at most 256"),
        ("aaaaaaaaaa", "repeat"),
        ("password", "commonly used"),
        ("PassWord1", "commonly used"),  # the list is compared case-insensitively
        ("iloveyou", "commonly used"),
        ("woaini1314", "commonly used"),  # from the list for this service's users
        ("1qaz2wsx", "commonly used"),
        ("alice.wang", "username"),
        ("tab\there!", "cannot be typed"),
    ],
)
def test_weak_passwords_are_refused_naming_the_rule(password: str, rule: str) -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password_rules(password, username="Alice.Wang")
    assert rule in str(caught.value)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",  # spaces allowed
        "lowercaseonlyhere",  # no composition rules
        "0123456789abcdef" * 4,  # 64 characters
        "long passphrase " * 16,  # 256 characters
        "我的密码是一句很长的话",  # any Unicode
        "emoji 🐉🐉 phrase",
    ],
)
def test_good_passwords_are_accepted(password: str) -> None:
    check_password_rules(password, username="someone")


def test_the_common_list_is_large() -> None:
    assert len(common_passwords()) > 19_000


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(memory_kib=19 * 1024, time_cost=2, parallelism=1)


def test_hashes_use_argon2id_at_the_configured_cost(hasher: PasswordHasher) -> None:
    stored = hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hasher.verify(stored, "correct horse battery staple")
    assert not hasher.verify(stored, "correct horse battery stapler")
    assert not hasher.needs_rehash(stored)


def test_equivalent_unicode_forms_verify_alike(hasher: PasswordHasher) -> None:
    """NFKC: a full-width password typed on another keyboard is the same password."""
    stored = hasher.hash("ＡＢＣ１２３ｘｙｚ")  # noqa: RUF001 - full width on purpose
    assert hasher.verify(stored, "ABC123xyz")


def test_weaker_parameters_need_a_rehash(hasher: PasswordHasher) -> None:
    old = PasswordHasher(memory_kib=8 * 1024, time_cost=1, parallelism=1)
    assert hasher.needs_rehash(old.hash("correct horse battery staple"))
    assert hasher.needs_rehash("not a hash")
    assert not hasher.verify("not a hash", "anything")
