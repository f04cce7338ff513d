from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from config.settings import build_settings
from idp.core.keys import (
    DecryptionFailed,
    KeysMissing,
    add_data_key,
    ensure_keys,
    load_keys,
)


def _settings(tmp_path: Path, **values: object):  # type: ignore[no-untyped-def]
    return build_settings({"data_dir": tmp_path, **values})


def test_init_creates_private_key_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    created = ensure_keys(settings)
    assert len(created) == 2
    for path in created:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
        assert mode == 0o600
    assert ensure_keys(settings) == []  # idempotent


def test_missing_keys_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(KeysMissing, match="idp init"):
        load_keys(_settings(tmp_path))


def test_encryption_round_trip_binds_the_context(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ensure_keys(settings)
    cipher = load_keys(settings).cipher
    token = cipher.encrypt("13800138000", context="users.phone")
    assert "13800138000" not in token
    assert cipher.decrypt(token, context="users.phone") == "13800138000"
    assert cipher.encrypt("13800138000", context="users.phone") != token  # fresh nonce
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(token, context="users.id_number")


def test_tampered_ciphertext_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ensure_keys(settings)
    cipher = load_keys(settings).cipher
    token = cipher.encrypt("secret", context="c")
    kid, body = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body))
    for position in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        altered = bytearray(raw)
        altered[position] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(altered)).decode()
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(f"{kid}.{forged}", context="c")


def test_rotation_keeps_old_ciphertexts_readable(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ensure_keys(settings)
    old = load_keys(settings).cipher
    token = old.encrypt("value", context="c")
    add_data_key(settings.keys_dir / "data")
    new = load_keys(settings).cipher
    assert new.active_kid != old.active_kid
    assert new.decrypt(token, context="c") == "value"
    assert new.key_id_of(new.encrypt("value", context="c")) == new.active_kid


def test_blind_index_is_keyed_and_purpose_bound(tmp_path: Path) -> None:
    first = _settings(tmp_path / "a", secret_key="a" * 40)
    second = _settings(tmp_path / "b", secret_key="b" * 40)
    for settings in (first, second):
        ensure_keys(settings)
    a = load_keys(first).cipher
    b = load_keys(second).cipher
    assert a.blind_index("13800138000", purpose="phone") == a.blind_index(
        "13800138000", purpose="phone"
    )
    assert a.blind_index("13800138000", purpose="phone") != a.blind_index(
        "13800138000", purpose="id"
    )
    assert a.blind_index("13800138000", purpose="phone") != b.blind_index(
        "13800138000", purpose="phone"
    )
