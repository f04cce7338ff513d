from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from flask.testing import FlaskClient

from idp.core.i18n import TRANSLATIONS
from tests.support import text

CATALOGUE = TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"

# every package whose strings scripts/i18n extracts
PACKAGES = ("config", "idp", "accounts", "pki", "federation")


def test_chinese_is_the_default(client: FlaskClient) -> None:
    page = text(client.get("/login", headers={"Accept-Language": ""}))
    assert '<html lang="zh-CN">' in page
    assert "登录" in page
    assert "用户名" in page


def test_accept_language_english(client: FlaskClient) -> None:
    page = text(client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.8"}))
    assert '<html lang="en">' in page
    assert "Sign in" in page


def test_ui_locales_wins_over_accept_language(client: FlaskClient) -> None:
    page = text(client.get("/login?ui_locales=en%20zh-CN", headers={"Accept-Language": "zh"}))
    assert '<html lang="en">' in page
    page = text(client.get("/login?ui_locales=fr-FR%20zh-Hans", headers={"Accept-Language": "en"}))
    assert '<html lang="zh-CN">' in page


def test_the_language_switch_is_remembered(client: FlaskClient) -> None:
    response = client.get("/locale?lang=en&next=/login")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert "Sign in" in text(client.get("/login", headers={"Accept-Language": "zh-CN"}))
    client.get("/locale?lang=zh_CN&next=/login")
    assert "登录" in text(client.get("/login", headers={"Accept-Language": "en"}))
    evil = client.get("/locale?lang=en&next=https://evil.example/")
    assert evil.headers["Location"] == "/account"


def test_every_message_is_translated() -> None:
    with CATALOGUE.open("rb") as handle:
        catalogue = read_po(handle)
    untranslated = []
    for message in catalogue:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings) or message.fuzzy:
            untranslated.append(message.id)
            continue
        source = message.id if isinstance(message.id, str) else message.id[0]
        placeholders = set(re.findall(r"%\(\w+\)[sd]", source))
        for string in strings:
            assert set(re.findall(r"%\(\w+\)[sd]", str(string))) == placeholders, source
    assert untranslated == []


@pytest.mark.parametrize("pattern", ["_(", "_l(", "N_(", "Reason("])
def test_the_catalogue_is_up_to_date_with_the_code(pattern: str) -> None:
    """Every marked string literal in the code has an entry (run scripts/i18n if not)."""
    with CATALOGUE.open("rb") as handle:
        known = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}
    root = Path(__file__).resolve().parents[2]
    marker = re.compile(r"(?<![\w.])" + re.escape(pattern) + r'"((?:[^"\\]|\\.)*)"\s*[,)]')
    missing = [
        (path.name, literal)
        for package in PACKAGES
        for path in root.glob(f"{package}/**/*.py")
        for literal in marker.findall(path.read_text(encoding="utf-8"))
        if literal not in known
    ]
    assert missing == []
