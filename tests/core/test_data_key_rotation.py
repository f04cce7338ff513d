"""Data-key rotation: every encrypted column is re-encrypted under a new key, in
batches, resumably; old keys go only when nothing uses them; workers pick up new keys."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from accounts.adapters.registry import import_records
from accounts.container import Accounts
from config import Settings
from idp.core.data_keys import DataKeyRotation, KeysInUse, encrypted_columns
from idp.core.keys import DATA_KEYS_DIR, DataCipher, add_data_key, ensure_keys, load_keys
from idp.core.runtime import Runtime, db
from idp.models import metadata
from tests.conftest import Backend
from tests.support import create_user

PERSON = ("11010519491231002X", "王小丽")
ORGANISATION = ("91110000600037341L", "东莞示例科技有限公司")
PHONE = "13800138000"
ROOT = Path(__file__).resolve().parents[2]

# every encrypted column there is today, by its context ("<table>.<column>")
CONTEXTS = {
    "users.phone_encrypted",
    "totp_credentials.secret_encrypted",
    "identities.number_encrypted",
    "identities.name_encrypted",
    "organisations.uscc_encrypted",
    "organisations.name_encrypted",
}


def test_every_encrypted_column_is_found_and_uses_its_own_context() -> None:
    """The rotation finds columns by name; the services must encrypt each column under
    the context "<table>.<column>" or rotated values would no longer decrypt."""
    found = {column.context for column in encrypted_columns(metadata)}
    assert found >= CONTEXTS
    sources = " ".join(
        path.read_text(encoding="utf-8")
        for package in ("accounts", "idp", "pki", "federation")
        for path in (ROOT / package).rglob("*.py")
    )
    for context in found:
        assert f'"{context}"' in sources, f"no code encrypts {context} under its own context"


def raw(app: Flask) -> dict[str, list[str]]:
    """Every stored ciphertext, by context."""
    values: dict[str, list[str]] = {}
    with app.app_context():
        for column in encrypted_columns(metadata):
            query = text(
                f"SELECT {column.column.name} FROM {column.table.name} "  # noqa: S608
                f"WHERE {column.column.name} IS NOT NULL ORDER BY id"
            )
            values[column.context] = [row[0] for row in db().execute(query)]
    return values


def readable(app: Flask) -> dict[str, Any]:
    """What the services read back: it must never change."""
    with app.app_context():
        accounts = Accounts.of().account_service()
        people = [accounts.find_by_username(name) for name in ("alice", "bob", "carol")]
        seen: dict[str, Any] = {}
        for user in people:
            assert user is not None
            status = Accounts.of().realname_service().status(user)
            seen[user.username] = (accounts.phone_of(user), status.masked_number)
            if Accounts.of().totp_service().has_pending_enrollment(user):
                seen[f"{user.username}-totp"] = (
                    Accounts.of().totp_service().pending_enrollment(user).secret
                )
        organisations = Accounts.of().organisation_service()
        organisation = organisations.find(ORGANISATION[0])
        assert organisation is not None
        seen["org"] = (organisations.uscc_of(organisation), organisations.name_of(organisation))
        return seen


@pytest.fixture
def data(app: Flask) -> dict[str, Any]:
    for name in ("alice", "bob", "carol"):
        create_user(app, name, phone=PHONE)
    with app.app_context():
        cipher = Runtime.of().keys.cipher
        import_records(
            db(), cipher, "person", io.StringIO(f"number,name\n{PERSON[0]},{PERSON[1]}\n")
        )
        import_records(
            db(),
            cipher,
            "organisation",
            io.StringIO(f"number,name\n{ORGANISATION[0]},{ORGANISATION[1]}\n"),
        )
        accounts = Accounts.of().account_service()
        alice = accounts.find_by_username("alice")
        bob = accounts.find_by_username("bob")
        assert alice is not None
        assert bob is not None
        Accounts.of().realname_service().verify_with_registry(alice, PERSON[1], PERSON[0])
        Accounts.of().totp_service().begin_enrollment(bob)  # an unconfirmed seed is encrypted too
        Accounts.of().organisation_service().verify_with_registry(
            ORGANISATION[1], ORGANISATION[0], actor="cli"
        )
    before = readable(app)
    assert before["alice"] == (PHONE, "110***********002X")
    return before


def new_key(app: Flask) -> str:
    """What `idp keys rotate-data` does first."""
    with app.app_context():
        rt = Runtime.of()
        kid = add_data_key(rt.settings.keys_dir / DATA_KEYS_DIR).stem
        assert rt.keys.cipher.reload() == [kid]
        assert rt.keys.cipher.active_kid == kid
        return kid


def rotation(app: Flask) -> DataKeyRotation:
    return DataKeyRotation(db(), Runtime.of().keys.cipher, encrypted_columns(metadata))


def blind_indexes(app: Flask) -> list[Any]:
    with app.app_context():
        return [
            *db().execute(text("SELECT phone_index FROM users ORDER BY id")).all(),
            *db().execute(text("SELECT number_index, verified_number_index FROM identities")).all(),
            *db().execute(text("SELECT uscc_index FROM organisations")).all(),
        ]


def test_rotation_rewrites_every_value_under_the_new_key(app: Flask, data: dict[str, Any]) -> None:
    before_raw = raw(app)
    indexes = blind_indexes(app)
    old_kid = before_raw["users.phone_encrypted"][0].partition(".")[0]
    assert set(before_raw) == {c.context for c in encrypted_columns(metadata)}
    assert all(before_raw[context] for context in CONTEXTS)  # every column has values
    kid = new_key(app)
    with app.app_context():
        report = rotation(app).reencrypt(batch_size=2)
    assert report.key_id == kid
    assert report.unreadable == {}
    after_raw = raw(app)
    for context, values in after_raw.items():
        assert len(values) == len(before_raw[context])
        assert report.rewritten[context] == len(values)
        for old, new in zip(before_raw[context], values, strict=True):
            assert new != old
            assert new.startswith(f"{kid}.")
    assert readable(app) == data
    assert blind_indexes(app) == indexes  # keyed from the root secret: unchanged
    with app.app_context():
        usage = rotation(app).usage()
        assert usage == {kid: sum(len(v) for v in after_raw.values())}
        removed = rotation(app).prune(Runtime.of().settings.keys_dir / DATA_KEYS_DIR)
        assert removed == [old_kid]
    # a node starting now loads only the new key, and reads everything
    assert readable(app) == data
    with app.app_context():
        fresh = load_keys(Runtime.of().settings).cipher
    assert fresh.key_ids == [kid]
    value = raw(app)["identities.number_encrypted"][0]
    assert fresh.decrypt(value, context="identities.number_encrypted") == PERSON[0]


def test_a_second_run_finds_nothing_to_do(app: Flask, data: dict[str, Any]) -> None:
    new_key(app)
    with app.app_context():
        assert rotation(app).reencrypt().total > 0
        assert rotation(app).reencrypt().total == 0
    assert readable(app) == data


def test_an_interrupted_run_leaves_everything_readable_and_a_second_run_finishes(
    app: Flask, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    old_kid = raw(app)["users.phone_encrypted"][0].partition(".")[0]
    kid = new_key(app)
    with app.app_context():
        cipher = Runtime.of().keys.cipher
        real_encrypt = cipher.encrypt
        calls = {"n": 0}

        def crashing_encrypt(plaintext: str, *, context: str) -> str:
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt  # the operator's Ctrl-C, mid-batch
            return real_encrypt(plaintext, context=context)

        monkeypatch.setattr(cipher, "encrypt", crashing_encrypt)
        with pytest.raises(KeyboardInterrupt):
            rotation(app).reencrypt(batch_size=2)
        monkeypatch.undo()
    halfway = raw(app)
    kids = {value.partition(".")[0] for values in halfway.values() for value in values}
    assert kids == {old_kid, kid}  # the first batch committed, the rest did not
    assert readable(app) == data  # nothing lost, nothing unreadable
    with app.app_context():
        with pytest.raises(KeysInUse) as refused:
            rotation(app).prune(Runtime.of().settings.keys_dir / DATA_KEYS_DIR)
        assert old_kid in refused.value.in_use
        assert (Runtime.of().settings.keys_dir / DATA_KEYS_DIR / f"{old_kid}.key").exists()
        report = rotation(app).reencrypt(batch_size=2)
        assert 0 < report.total < sum(len(v) for v in halfway.values())
    finished = raw(app)
    assert all(v.startswith(f"{kid}.") for values in finished.values() for v in values)
    assert readable(app) == data
    with app.app_context():
        assert rotation(app).prune(Runtime.of().settings.keys_dir / DATA_KEYS_DIR) == [old_kid]


def test_a_value_changed_meanwhile_is_not_overwritten(
    app: Flask, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch, backend: Backend
) -> None:
    """Compare and set: the service writing a new phone number during the rotation wins."""
    if backend.name == "embedded":
        pytest.skip("SQLite serialises writers: no other write can land inside a batch")
    new_key(app)
    with app.app_context():
        cipher = Runtime.of().keys.cipher
        real_decrypt = cipher.decrypt
        newer = cipher.encrypt("13900139000", context="users.phone_encrypted")

        def decrypt_then_race(token: str, *, context: str) -> str:
            plain = real_decrypt(token, context=context)
            if context == "users.phone_encrypted" and plain == PHONE:
                with Runtime.of().database.sessions() as other, other.begin():
                    other.execute(
                        text("UPDATE users SET phone_encrypted = :v WHERE username = 'carol'"),
                        {"v": newer},
                    )
            return plain

        monkeypatch.setattr(cipher, "decrypt", decrypt_then_race)
        rotation(app).reencrypt(batch_size=10)
        monkeypatch.undo()
        carol = Accounts.of().account_service().find_by_username("carol")
        assert carol is not None
        db().refresh(carol)
        assert Accounts.of().account_service().phone_of(carol) == "13900139000"


def test_unreadable_values_are_reported_and_left_alone(app: Flask, data: dict[str, Any]) -> None:
    with app.app_context():
        db().execute(text("UPDATE users SET phone_encrypted = 'dnope.AAAA' WHERE username = 'bob'"))
        db().commit()
    new_key(app)
    with app.app_context():
        report = rotation(app).reencrypt()
        assert list(report.unreadable) == ["users.phone_encrypted"]
        assert len(report.unreadable["users.phone_encrypted"]) == 1
        assert rotation(app).usage()["?"] == 1
        with pytest.raises(KeysInUse):
            rotation(app).prune(Runtime.of().settings.keys_dir / DATA_KEYS_DIR)
    assert "dnope.AAAA" in raw(app)["users.phone_encrypted"]


# -- workers pick up a key another node (or the command) added ----------------------------


def _settings(tmp_path: Path) -> Settings:
    from config.settings import build_settings

    settings = build_settings({"data_dir": tmp_path, "secret_key": "s" * 48})
    ensure_keys(settings)
    return settings


def test_a_worker_reads_values_under_a_key_added_after_it_started(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    worker = load_keys(settings).cipher  # started before the rotation
    command = load_keys(settings).cipher
    kid = add_data_key(settings.keys_dir / DATA_KEYS_DIR).stem
    command.reload()
    token = command.encrypt("secret", context="t.c")
    assert token.startswith(f"{kid}.")
    assert worker.decrypt(token, context="t.c") == "secret"  # loaded on demand
    assert worker.active_kid == kid  # and it now encrypts under it


def test_a_worker_encrypts_under_a_new_key_after_the_refresh_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    worker = load_keys(settings).cipher
    old = worker.active_kid
    kid = add_data_key(settings.keys_dir / DATA_KEYS_DIR).stem
    assert worker.encrypt("x", context="t.c").startswith(f"{old}.")  # not yet due
    monkeypatch.setattr(worker, "_checked", 0.0)  # the interval has passed
    assert worker.encrypt("x", context="t.c").startswith(f"{kid}.")


def test_a_half_written_key_file_is_ignored_until_complete(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    worker = load_keys(settings).cipher
    old = worker.active_kid
    (settings.keys_dir / DATA_KEYS_DIR / "dz-partial.key").write_bytes(b"abc")
    worker._checked = 0.0  # force the periodic look
    assert worker.encrypt("x", context="t.c").startswith(f"{old}.")


def test_a_cipher_without_a_loader_never_reloads() -> None:
    from idp.core.keys import DataKey

    cipher = DataCipher([DataKey("d1", b"k" * 32)], index_key=b"i" * 32)
    assert cipher.reload() == []


def test_key_ids_name_the_key_in_every_ciphertext(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    cipher = load_keys(settings).cipher
    assert re.fullmatch(r"d[0-9T]+[0-9a-f]{4}\..+", cipher.encrypt("x", context="t.c"))
