"""Real-name level 2: a self-declared identity and a one-time code texted to the phone
(single use, expiry, wrong tries, rate limits, gateway failures), and its pages."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from accounts.adapters.sms import SmsUnavailable
from accounts.container import Accounts
from accounts.people.errors import InvalidPhone
from accounts.people.models import User
from accounts.realname.errors import (
    IdentityAlreadyVerified,
    IdentityTaken,
    InvalidDocument,
    InvalidName,
)
from accounts.realname.models import Identity, Verification, VerificationMethod
from accounts.realname.phone import (
    CodeExpired,
    PendingCode,
    SmsDown,
    TooManyCodes,
    TooManyWrongCodes,
    WrongCode,
)
from config import Settings
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.core.store import Store
from tests.accounts.test_realname import (
    ALICE_ID,
    ALICE_NAME,
    BOB_ID,
    REGISTRY_CSV,
    audit_events,
    count,
    level,
    load_registry,
    user_named,
    verify,
)
from tests.support import STRONG_PASSWORD, AppFactory, create_user, sign_in, submit
from tests.support import text as body

PHONE = "13800138000"
OTHER_PHONE = "13912345678"
_CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture
def alice(app: Flask) -> None:
    create_user(app)
    load_registry(app, REGISTRY_CSV + f"{BOB_ID},李大明\n")


def sms_log(settings: Settings) -> Path:
    return settings.data_dir / "sms.log"


def last_code(settings: Settings, phone: str = PHONE) -> str:
    """The code in the newest message to ``phone`` that the development gateway wrote."""
    lines = sms_log(settings).read_text(encoding="utf-8").splitlines()
    for line in reversed(lines):
        message = json.loads(line)
        if message["to"] == phone:
            match = _CODE.search(message["text"])
            assert match, message["text"]
            return match.group(1)
    raise AssertionError(f"no message to {phone}")


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def send(
    app: Flask,
    username: str = "alice",
    *,
    name: str = ALICE_NAME,
    number: str = ALICE_ID,
    phone: str = PHONE,
) -> PendingCode:
    with app.test_request_context():
        return Accounts.of().phone_check_service().send_code(account(username), name, number, phone)


def confirm(app: Flask, code: str, username: str = "alice") -> Verification:
    with app.test_request_context():
        return Accounts.of().phone_check_service().confirm(account(username), code)


def account(username: str) -> User:
    """The account, in the current context's session."""
    user = Accounts.of().account_service().find_by_username(username)
    assert user is not None
    return user


def failure_reasons(app: Flask) -> list[str]:
    return [
        str(e.details["reason"])
        for e in audit_events(app, "realname.verify")
        if e.outcome == "failure"
    ]


class DownGateway:
    source = "sms:test-down"

    def send(self, _phone: str, _text: str) -> None:
        raise SmsUnavailable("connection refused")


# -- the service -----------------------------------------------------------------------


def test_a_code_gives_level_2_with_a_self_declared_identity(
    app: Flask, settings: Settings, clock: FrozenClock, alice: None
) -> None:
    pending = send(app, name=" 王小丽 ", number=ALICE_ID.lower(), phone="+86 138-0013-8000")
    assert pending.masked_phone == "138****8000"
    verification = confirm(app, last_code(settings))
    assert (verification.method, verification.level) == (VerificationMethod.SMS, 2)
    assert level(app, "alice") == 2
    with app.app_context():
        stored = db().scalar(select(Verification))
        assert stored is not None
        assert stored.source == "sms:development"
        assert stored.expires_at is not None
        assert (stored.expires_at - clock.now()).days == settings.sms_level_valid_days
        identity = db().scalar(select(Identity))
        assert identity is not None
        assert identity.verified_number_index is None  # self-declared: no claim
        assert identity.document_kind == "resident_id"
        assert Accounts.of().realname_service().number_of(identity) == ALICE_ID
        assert Accounts.of().realname_service().name_of(identity) == ALICE_NAME
        user = user_named(app, "alice")
        assert Accounts.of().account_service().phone_of(user) == PHONE
        assert user.phone_index
    (event,) = audit_events(app, "realname.verify")
    assert event.outcome == "success"
    assert event.details == {"method": "sms", "level": 2, "document_kind": "resident_id"}


def test_the_development_gateway_writes_the_message_to_a_file(
    app: Flask, settings: Settings, clock: FrozenClock, alice: None
) -> None:
    assert not sms_log(settings).exists()
    send(app)
    (line,) = sms_log(settings).read_text(encoding="utf-8").splitlines()
    message = json.loads(line)
    assert message["to"] == PHONE
    assert message["at"] == clock.now().isoformat()
    assert re.search(r"code is \d{6}\. It is valid for 10 minutes", message["text"])


def test_a_code_is_accepted_once(app: Flask, settings: Settings, alice: None) -> None:
    send(app)
    code = last_code(settings)
    confirm(app, code)
    with pytest.raises(CodeExpired):
        confirm(app, code)
    assert count(app, Verification) == 1


def test_a_code_expires(app: Flask, settings: Settings, clock: FrozenClock, alice: None) -> None:
    send(app)
    clock.advance(settings.sms_code_lifetime_seconds + 1)
    with pytest.raises(CodeExpired):
        confirm(app, last_code(settings))
    assert level(app, "alice") == 1
    send(app)  # a new code, used in time, works
    clock.advance(settings.sms_code_lifetime_seconds - 5)
    confirm(app, last_code(settings))
    assert level(app, "alice") == 2


def test_a_wrong_code_can_be_corrected(app: Flask, settings: Settings, alice: None) -> None:
    send(app)
    code = last_code(settings)
    with pytest.raises(WrongCode):
        confirm(app, wrong(code))
    with pytest.raises(WrongCode):
        confirm(app, "not a code")
    confirm(app, " ".join(code))  # spaces are ignored
    assert level(app, "alice") == 2
    assert failure_reasons(app) == ["wrong_code", "wrong_code"]


def test_the_fifth_wrong_code_drops_the_code(app: Flask, settings: Settings, alice: None) -> None:
    send(app)
    code = last_code(settings)
    for _ in range(4):
        with pytest.raises(WrongCode):
            confirm(app, wrong(code))
    with pytest.raises(TooManyWrongCodes):
        confirm(app, wrong(code))
    with pytest.raises(CodeExpired):
        confirm(app, code)  # even the right code: it is gone
    assert level(app, "alice") == 1
    assert failure_reasons(app) == ["wrong_code"] * 4 + ["too_many_wrong_codes"]


def test_a_new_code_replaces_the_pending_one(app: Flask, settings: Settings, alice: None) -> None:
    send(app)
    first = last_code(settings)
    send(app)
    second = last_code(settings)
    if first != second:
        with pytest.raises(WrongCode):
            confirm(app, first)
    confirm(app, second)
    assert level(app, "alice") == 2


def test_a_code_belongs_to_the_account_that_asked(
    app: Flask, settings: Settings, alice: None
) -> None:
    create_user(app, "mallory")
    send(app)
    with pytest.raises(CodeExpired):  # mallory has no code pending
        confirm(app, last_code(settings), username="mallory")
    confirm(app, last_code(settings))
    assert (level(app, "alice"), level(app, "mallory")) == (2, 1)


def test_two_submissions_of_one_code_verify_once(
    app: Flask, settings: Settings, alice: None
) -> None:
    send(app)
    code = last_code(settings)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def attempt() -> None:
        with app.test_request_context():
            service = Accounts.of().phone_check_service()
            user = account("alice")
            barrier.wait()
            try:
                service.confirm(user, code)
                outcomes.append("verified")
            except CodeExpired:
                outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "verified"]
    assert count(app, Verification) == 1


def test_codes_per_phone_are_limited_whichever_account_asks(
    app: Flask, settings: Settings, alice: None
) -> None:
    create_user(app, "bob")
    limit = settings.sms_codes_per_phone_per_hour
    for index in range(limit):
        send(app, "alice" if index % 2 else "bob")
    with pytest.raises(TooManyCodes):
        send(app, "alice")
    with pytest.raises(TooManyCodes):
        send(app, "bob")
    send(app, "bob", phone=OTHER_PHONE)  # another number is not affected
    assert len(sms_log(settings).read_text(encoding="utf-8").splitlines()) == limit + 1


def test_codes_per_account_are_limited(app: Flask, settings: Settings, alice: None) -> None:
    for index in range(settings.sms_codes_per_account_per_day):
        send(app, phone=f"1380000{index:04d}")
    with pytest.raises(TooManyCodes):
        send(app, phone=OTHER_PHONE)


def test_a_gateway_failure_records_nothing(
    app: Flask, settings: Settings, alice: None, make_app: AppFactory
) -> None:
    send(app)
    earlier = last_code(settings)
    with pytest.raises(SmsDown):
        send(make_app(sms=DownGateway()))
    with pytest.raises(CodeExpired):  # the earlier code was replaced, the new one not sent
        confirm(app, earlier)
    assert level(app, "alice") == 1
    assert count(app, Verification) == 0
    assert count(app, Identity) == 0
    assert failure_reasons(app) == ["sms_unavailable"]
    (event,) = audit_events(app, "realname.verify")
    assert event.details["error"] == "connection refused"


@pytest.mark.parametrize(
    ("name", "number", "phone", "error"),
    [
        (ALICE_NAME, ALICE_ID[:-1] + "1", PHONE, InvalidDocument),  # bad check character
        (ALICE_NAME, "91110000600037341L", PHONE, InvalidDocument),  # an organisation
        ("  ", ALICE_ID, PHONE, InvalidName),
        ("王" * 65, ALICE_ID, PHONE, InvalidName),
        (ALICE_NAME, ALICE_ID, "12345", InvalidPhone),
        (ALICE_NAME, ALICE_ID, "02012345678", InvalidPhone),  # a landline
    ],
)
def test_declarations_are_checked_before_a_code_is_sent(
    app: Flask,
    settings: Settings,
    alice: None,
    name: str,
    number: str,
    phone: str,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        send(app, name=name, number=number, phone=phone)
    assert not sms_log(settings).exists()


def test_a_confirmed_identity_is_not_replaced(app: Flask, settings: Settings, alice: None) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    with pytest.raises(IdentityAlreadyVerified):
        send(app, name="李大明", number=BOB_ID)
    with pytest.raises(IdentityAlreadyVerified):
        send(app, name="王小明", number=ALICE_ID)  # the same number with another name
    assert not sms_log(settings).exists()
    # the same document: the phone is confirmed, the identity stays as the registry said
    send(app, name="王 小丽", number=ALICE_ID)
    confirm(app, last_code(settings))
    assert level(app, "alice") == 3
    with app.app_context():
        identity = db().scalar(select(Identity))
        assert identity is not None
        assert identity.verified_number_index is not None
        assert Accounts.of().realname_service().name_of(identity) == ALICE_NAME
        methods = sorted(v.method.value for v in db().scalars(select(Verification)))
        assert methods == ["registry", "sms"]
        assert Accounts.of().account_service().phone_of(user_named(app, "alice")) == PHONE


def test_a_number_confirmed_for_another_account_is_refused_after_the_code(
    app: Flask, settings: Settings, alice: None
) -> None:
    create_user(app, "bob")
    verify(app, "bob", "李大明", BOB_ID)
    send(app, name="李大明", number=BOB_ID)  # no refusal yet: the form is no oracle
    code = last_code(settings)
    with pytest.raises(WrongCode):  # nor to someone who cannot read the phone's messages
        confirm(app, wrong(code))
    with pytest.raises(IdentityTaken) as refused:
        confirm(app, code)
    assert "bob" not in str(refused.value)
    assert level(app, "alice") == 1
    with app.app_context():
        holders = list(db().scalars(select(Identity.user_id)))
        assert holders == [user_named(app, "bob").id]
        assert user_named(app, "alice").phone_encrypted is None
    assert failure_reasons(app) == ["wrong_code", "identity_taken"]


def test_a_self_declared_number_claims_nothing(app: Flask, settings: Settings, alice: None) -> None:
    send(app)
    confirm(app, last_code(settings))
    create_user(app, "carol")
    verify(app, "carol", ALICE_NAME, ALICE_ID)  # the registry decides, not a declaration
    assert (level(app, "alice"), level(app, "carol")) == (2, 3)
    with pytest.raises(IdentityTaken):
        verify(app, "alice", ALICE_NAME, ALICE_ID)


def test_a_declaration_may_be_corrected_at_level_2(
    app: Flask, settings: Settings, alice: None
) -> None:
    send(app, name="李大明", number=BOB_ID)
    confirm(app, last_code(settings))
    send(app, phone=OTHER_PHONE)
    confirm(app, last_code(settings, OTHER_PHONE))
    with app.app_context():
        identity = db().scalar(select(Identity))
        assert identity is not None
        assert Accounts.of().realname_service().number_of(identity) == ALICE_ID
        assert Accounts.of().account_service().phone_of(user_named(app, "alice")) == OTHER_PHONE


def test_no_phone_number_name_or_code_is_kept_in_clear(
    app: Flask, settings: Settings, store: Store, alice: None
) -> None:
    send(app)
    code = last_code(settings)
    with app.app_context():
        pending = store.get(f"realname:sms:{user_named(app, 'alice').public_id}")
    assert pending is not None
    for secret in (PHONE, ALICE_ID, ALICE_NAME, code):
        assert secret.encode() not in pending
    with pytest.raises(WrongCode):
        confirm(app, wrong(code))
    confirm(app, code)
    with app.app_context():
        dumped = " ".join(
            str(value)
            for table in ("users", "identities", "verifications", "audit_events")
            for row in db().execute(text(f"SELECT * FROM {table}")).mappings()  # noqa: S608
            for value in row.values()
        )
    for secret in (PHONE, PHONE[-8:], ALICE_ID, ALICE_ID[:17], ALICE_NAME, code):
        assert secret not in dumped


# -- the pages -------------------------------------------------------------------------


def test_the_pages_lead_from_declaration_to_level_2(
    app: Flask, client: FlaskClient, settings: Settings, alice: None
) -> None:
    sign_in(client)
    form = client.get("/account/realname/phone")
    assert form.status_code == 200
    for name in ("name", "id_number", "phone"):
        assert f'name="{name}"' in body(form)
    sent = submit(
        client,
        "/account/realname/phone",
        {"name": ALICE_NAME, "id_number": ALICE_ID, "phone": PHONE},
    )
    assert sent.status_code == 302
    assert sent.headers["Location"] == "/account/realname/phone/code"
    page = client.get("/account/realname/phone/code")
    assert page.status_code == 200
    assert "138****8000" in body(page)
    assert 'name="otp"' in body(page)
    assert PHONE not in body(page)
    done = submit(client, "/account/realname/phone/code", {"otp": last_code(settings)})
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/realname"
    assert "real-name level 2" in body(client.get("/account/realname"))
    assert level(app, "alice") == 2


def test_the_code_page_says_what_is_wrong(
    app: Flask, client: FlaskClient, settings: Settings, alice: None
) -> None:
    sign_in(client)
    assert client.get("/account/realname/phone/code").status_code == 302  # nothing pending
    submit(
        client,
        "/account/realname/phone",
        {"name": ALICE_NAME, "id_number": ALICE_ID, "phone": PHONE},
    )
    code = last_code(settings)
    bad = submit(client, "/account/realname/phone/code", {"otp": wrong(code)})
    assert bad.status_code == 400
    assert "not right" in body(bad)
    assert submit(client, "/account/realname/phone/code", {"otp": code}).status_code == 302
    again = submit(
        client,
        "/account/realname/phone/code",
        {"otp": code},
        form_url="/account/realname/phone",
    )
    assert again.status_code == 400
    assert "already been used" in body(again)
    assert count(app, Verification) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id_number": "12345"}, "identity document"),
        ({"phone": "12345"}, "11-digit"),
        ({"name": ""}, "required"),
    ],
)
def test_the_form_says_what_is_wrong(
    app: Flask,
    client: FlaskClient,
    settings: Settings,
    alice: None,
    fields: dict[str, str],
    message: str,
) -> None:
    sign_in(client)
    data = {"name": ALICE_NAME, "id_number": ALICE_ID, "phone": PHONE, **fields}
    response = submit(client, "/account/realname/phone", data)
    assert response.status_code == 400
    assert message in body(response)
    assert not sms_log(settings).exists()


def test_the_form_answers_429_and_503(
    app: Flask,
    client: FlaskClient,
    settings: Settings,
    alice: None,
    make_app: AppFactory,
) -> None:
    data = {"name": ALICE_NAME, "id_number": ALICE_ID, "phone": PHONE}
    down_client = make_app(sms=DownGateway()).test_client()
    sign_in(down_client)
    down = submit(down_client, "/account/realname/phone", data)
    assert down.status_code == 503
    assert "could not be sent" in body(down)
    sign_in(client)
    for _ in range(settings.sms_codes_per_phone_per_hour - 1):
        assert submit(client, "/account/realname/phone", data).status_code == 302
    limited = submit(client, "/account/realname/phone", data)
    assert limited.status_code == 429
    assert "Too many codes" in body(limited)
    assert level(app, "alice") == 1


def test_the_pages_need_a_session_and_a_csrf_token(
    app: Flask, client: FlaskClient, settings: Settings, alice: None
) -> None:
    assert client.get("/account/realname/phone").status_code == 302
    assert client.get("/account/realname/phone/code").status_code == 302
    sign_in(client)
    forged = client.post(
        "/account/realname/phone",
        data={"name": ALICE_NAME, "id_number": ALICE_ID, "phone": PHONE},
    )
    assert forged.status_code == 400
    assert not sms_log(settings).exists()


def test_next_is_kept_and_followed_after_level_2(
    app: Flask, client: FlaskClient, settings: Settings, alice: None
) -> None:
    target = "/authorize/continue?rid=abc123"
    sign_in(client)
    url = "/account/realname/phone?" + urlencode({"next": target})
    form = client.get(url)
    assert 'name="next"' in body(form)
    sent = submit(
        client,
        "/account/realname/phone",
        {"name": ALICE_NAME, "id_number": ALICE_ID, "phone": PHONE, "next": target},
        form_url=url,
    )
    assert sent.status_code == 302
    code_page = sent.headers["Location"]
    assert code_page.startswith("/account/realname/phone/code?next=")
    assert 'name="next"' in body(client.get(code_page))
    done = submit(
        client,
        "/account/realname/phone/code",
        {"otp": last_code(settings), "next": target},
        form_url=code_page,
    )
    assert done.status_code == 302
    assert done.headers["Location"] == target


def test_an_off_site_next_is_ignored(
    app: Flask, client: FlaskClient, settings: Settings, alice: None
) -> None:
    sign_in(client)
    submit(
        client,
        "/account/realname/phone",
        {"name": ALICE_NAME, "id_number": ALICE_ID, "phone": PHONE, "next": "//evil.example/"},
    )
    done = submit(
        client,
        "/account/realname/phone/code",
        {"otp": last_code(settings), "next": "https://evil.example/"},
    )
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/realname"


def test_phone_number_verified_follows_the_proved_number(
    app: Flask, settings: Settings, alice: None
) -> None:
    """OpenID Connect's phone_number_verified: false for a number typed at registration,
    true once a code sent to the account's current number was entered, false again when
    an administrator ends that record."""
    with app.app_context():
        Accounts.of().account_service().register("carol", STRONG_PASSWORD, phone=PHONE)

    def claims() -> dict[str, object]:
        with app.app_context():
            return Accounts.of().account_service().standard_claims(user_named(app, "carol"))

    assert claims()["phone_number_verified"] is False
    send(app, "carol", name="李大明", number=BOB_ID, phone=OTHER_PHONE)
    confirm(app, last_code(settings, OTHER_PHONE), "carol")
    assert claims()["phone_number"] == "+86" + OTHER_PHONE
    assert claims()["phone_number_verified"] is True
    with app.app_context():
        Accounts.of().realname_service().end_verifications(
            user_named(app, "carol"), above=1, reason="number reassigned", actor="cli"
        )
    assert claims()["phone_number_verified"] is False
