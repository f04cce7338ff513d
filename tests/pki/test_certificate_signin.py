"""Certificate sign-in from the browser's side (and the attacker's): the challenge form,
a signature by the certificate's key, the account it maps to, level 5, first use
(create or bind), the account's certificates, and the refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from accounts.container import Accounts
from accounts.realname.services import DocumentClaim, VerificationMethod
from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from pki.challenge import sign_challenge
from pki.identity import GMT0015_IDENTITY_NUMBER
from pki.models import CertificateBinding
from tests.accounts.test_realname import load_registry
from tests.pki.certs import Issued, make_ca, make_leaf, printable_string, utf8_string
from tests.pki.conftest import GMT0015_CREDIT_CODE, LOCAL
from tests.pki.test_bridge import invoke, invoke_json, write
from tests.support import STRONG_PASSWORD, create_user, csrf_token, sign_in

PERSON = "11010519491231002X"
OTHER_PERSON = "110105194912310038"
USCC = "91110000600037341L"
_CHALLENGE = re.compile(r'name="challenge" type="hidden" value="([^"]+)"')


def person(issuer: Issued, number: str = PERSON, *, key: str = "ec") -> Issued:
    return make_leaf(
        issuer,
        "王小丽",
        key=key,
        policies=[LOCAL],
        identity_extensions=[(GMT0015_IDENTITY_NUMBER, utf8_string(number))],
    )


def enterprise(issuer: Issued) -> Issued:
    return make_leaf(
        issuer,
        "示例科技有限公司",
        policies=[LOCAL],
        identity_extensions=[(GMT0015_CREDIT_CODE, printable_string(USCC))],
    )


def challenge_of(client: FlaskClient) -> tuple[str, str]:
    page = client.get("/login/certificate").get_data(as_text=True)
    match = _CHALLENGE.search(page)
    assert match, "no challenge in the page"
    return match.group(1), csrf_token(page)


def post_signed(
    client: FlaskClient,
    cert: Issued,
    *,
    key_of: Issued | None = None,
    challenge: str | None = None,
    token: str | None = None,
) -> Any:
    fresh, fresh_token = challenge_of(client)
    challenge = challenge or fresh
    fields = sign_challenge((key_of or cert).key_pem, cert.pem, challenge)
    return client.post(
        "/login/certificate",
        data={
            "csrf_token": token or fresh_token,
            "challenge": challenge,
            "certificate": fields["certificate"],
            "signature": fields["signature"],
        },
    )


def level_of(app: Flask, username: str) -> int:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        return Accounts.of().realname_service().level(user)


def last_signin_amr(app: Flask) -> list[str]:
    with app.app_context():
        event = db().scalar(
            select(AuditEvent).where(AuditEvent.event == "signin").order_by(AuditEvent.seq.desc())
        )
        assert event is not None
        return list(event.details["amr"])


def create_account_for_pending(client: FlaskClient, username: str = "xiaoli") -> Any:
    page = client.get("/login/certificate/new").get_data(as_text=True)
    return client.post(
        "/login/certificate/new",
        data={"csrf_token": csrf_token(page), "username": username, "password": STRONG_PASSWORD},
    )


def test_the_sign_in_page_links_to_certificate_sign_in(app: Flask, city_ca: Issued) -> None:
    page = app.test_client().get("/login").get_data(as_text=True)
    assert "/login/certificate" in page


def test_first_sign_in_creates_an_account_at_level_5(app: Flask, city_ca: Issued) -> None:
    client = app.test_client()
    answer = post_signed(client, person(city_ca))
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login/certificate/new")
    page = client.get("/login/certificate/new").get_data(as_text=True)
    assert "city-ca" in page
    assert PERSON not in page  # only the masked form is shown
    assert create_account_for_pending(client).status_code == 302
    assert client.get("/account").status_code == 200
    assert level_of(app, "xiaoli") == 5
    assert last_signin_amr(app) == ["hwk", "sc"]
    with app.app_context():
        binding = db().scalar(select(CertificateBinding))
        assert binding is not None
        assert binding.identity_kind == "person"
        assert PERSON not in binding.identifier_masked
        assert PERSON not in binding.identity_index


def test_a_bound_certificate_signs_in_its_account(app: Flask, city_ca: Issued) -> None:
    cert = person(city_ca)
    first = app.test_client()
    post_signed(first, cert)
    create_account_for_pending(first)
    again = app.test_client()
    answer = post_signed(again, cert)
    assert answer.status_code == 302
    assert again.get("/account").status_code == 200
    assert "xiaoli" in again.get("/account").get_data(as_text=True)


def test_a_certificate_for_a_confirmed_identity_signs_in_that_account(
    app: Flask, city_ca: Issued
) -> None:
    user = create_user(app, "alice")
    with app.app_context():
        Accounts.of().realname_service().record_verification(
            Accounts.of().account_service().get(user.id),  # type: ignore[arg-type]
            method=VerificationMethod.COUNTER,
            level=5,
            source="counter:test",
            document=DocumentClaim.checked("王小丽", PERSON),
        )
    client = app.test_client()
    assert post_signed(client, person(city_ca)).status_code == 302
    assert "alice" in client.get("/account").get_data(as_text=True)


def test_first_use_can_be_bound_to_the_account_signed_in_to(app: Flask, city_ca: Issued) -> None:
    create_user(app, "alice")
    client = app.test_client()
    post_signed(client, person(city_ca))
    sign_in(client, "alice")
    page = client.get("/login/certificate/bind").get_data(as_text=True)
    answer = client.post("/login/certificate/bind", data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 302
    assert level_of(app, "alice") == 5
    listing = client.get("/account/certificates").get_data(as_text=True)
    assert "city-ca" in listing
    # the next certificate sign-in lands on alice
    other = app.test_client()
    post_signed(other, person(city_ca))  # a new certificate for the same person
    assert "alice" in other.get("/account").get_data(as_text=True)


def test_an_identity_confirmed_on_another_account_is_refused_without_saying_which(
    app: Flask, city_ca: Issued
) -> None:
    create_user(app, "bob")
    client = app.test_client()
    post_signed(client, person(city_ca))  # pending: nobody holds the identity yet
    holder = create_user(app, "holder")
    with app.app_context():
        Accounts.of().realname_service().record_verification(
            Accounts.of().account_service().get(holder.id),  # type: ignore[arg-type]
            method=VerificationMethod.COUNTER,
            level=5,
            source="counter:test",
            document=DocumentClaim.checked("王小丽", PERSON),
        )
    sign_in(client, "bob")
    page = client.get("/login/certificate/bind").get_data(as_text=True)
    answer = client.post("/login/certificate/bind", data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 403
    text = answer.get_data(as_text=True)
    assert "holder" not in text
    assert level_of(app, "bob") == 1
    with app.app_context():
        assert db().scalar(select(CertificateBinding)) is None


def test_a_challenge_is_used_once(app: Flask, city_ca: Issued) -> None:
    cert = person(city_ca)
    client = app.test_client()
    challenge, token = challenge_of(client)
    fields = sign_challenge(cert.key_pem, cert.pem, challenge)
    data = {"csrf_token": token, "challenge": challenge, **fields}
    assert client.post("/login/certificate", data=data).status_code == 302
    replay = app.test_client()
    _, replay_token = challenge_of(replay)
    again = replay.post("/login/certificate", data={**data, "csrf_token": replay_token})
    assert again.status_code == 401
    assert "unknown or was already used" in again.get_data(as_text=True)


def test_an_expired_challenge_is_refused(app: Flask, city_ca: Issued, clock: FrozenClock) -> None:
    cert = person(city_ca)
    client = app.test_client()
    challenge, token = challenge_of(client)
    clock.advance(121)
    answer = post_signed(client, cert, challenge=challenge, token=token)
    assert answer.status_code == 401
    assert "expired" in answer.get_data(as_text=True) or "unknown" in answer.get_data(as_text=True)


def test_a_challenge_from_another_session_is_refused(app: Flask, city_ca: Issued) -> None:
    cert = person(city_ca)
    victim = app.test_client()
    challenge, _ = challenge_of(victim)
    attacker = app.test_client()
    answer = post_signed(attacker, cert, challenge=challenge)
    assert answer.status_code == 401
    assert attacker.get("/account").status_code == 302  # not signed in


def test_a_signature_by_another_key_is_refused(app: Flask, city_ca: Issued) -> None:
    cert = person(city_ca)
    thief_key = person(city_ca)  # another key pair
    client = app.test_client()
    challenge, token = challenge_of(client)
    fields = sign_challenge(thief_key.key_pem, thief_key.pem, challenge)
    answer = client.post(
        "/login/certificate",
        data={
            "csrf_token": token,
            "challenge": challenge,
            "certificate": cert.pem.decode(),
            "signature": fields["signature"],
        },
    )
    assert answer.status_code == 401
    assert client.get("/account").status_code == 302


def test_a_certificate_of_an_unregistered_ca_is_refused_with_its_reason(
    app: Flask, city_ca: Issued
) -> None:
    stranger = make_ca("Stranger CA", policies=[LOCAL])
    answer = post_signed(app.test_client(), person(stranger))
    assert answer.status_code == 401
    assert "not a CA registered" in answer.get_data(as_text=True)


def test_the_reason_is_said_in_the_readers_language(app: Flask, city_ca: Issued) -> None:
    stranger = make_ca("Stranger CA", policies=[LOCAL])
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    page = post_signed(client, person(stranger)).get_data(as_text=True)
    assert "该 CA 未在平台登记" in page  # the reason, in Chinese
    assert "CN=Stranger CA" in page  # the CA's name as the certificate gives it
    assert "not a CA registered" not in page
    assert "which is" not in page


def test_a_cut_off_ca_signs_nobody_in(app: Flask, city_ca: Issued) -> None:
    cert = person(city_ca)
    client = app.test_client()
    post_signed(client, cert)
    create_account_for_pending(client)
    invoke_json(app, "revoke-cross-cert", "city-ca")
    answer = post_signed(app.test_client(), cert)
    assert answer.status_code == 401
    assert "cut off" in answer.get_data(as_text=True)


def test_garbage_fields_get_a_page_not_a_500(app: Flask, city_ca: Issued) -> None:
    client = app.test_client()
    challenge, token = challenge_of(client)
    for certificate, signature in (
        ("not a certificate", "AAAA"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "!!"),
        (person(city_ca).pem.decode(), "x" * 4000),
    ):
        challenge, token = challenge_of(client)
        answer = client.post(
            "/login/certificate",
            data={
                "csrf_token": token,
                "challenge": challenge,
                "certificate": certificate,
                "signature": signature,
            },
        )
        assert answer.status_code in (400, 401), answer.status_code
    missing = client.post("/login/certificate", data={"csrf_token": token})
    assert missing.status_code == 400


def test_an_enterprise_certificate_is_bound_by_its_credit_code_index(
    app: Flask, city_ca: Issued
) -> None:
    cert = enterprise(city_ca)
    client = app.test_client()
    post_signed(client, cert)
    assert create_account_for_pending(client, "clerk").status_code == 302
    assert level_of(app, "clerk") == 1  # an enterprise certificate proves no person
    with app.app_context():
        binding = db().scalar(select(CertificateBinding))
        assert binding is not None
        assert binding.identity_kind == "organisation"
        assert binding.identifier_type == "uscc"
        assert binding.identity_index == Accounts.of().organisation_service().uscc_index(USCC)
    again = app.test_client()
    assert post_signed(again, cert).status_code == 302
    assert "clerk" in again.get("/account").get_data(as_text=True)


def test_certificates_are_listed_and_unbound_on_the_account_page(
    app: Flask, city_ca: Issued
) -> None:
    cert = person(city_ca)
    client = app.test_client()
    post_signed(client, cert)
    create_account_for_pending(client)
    assert "/account/certificates" in client.get("/account").get_data(as_text=True)
    listing = client.get("/account/certificates").get_data(as_text=True)
    assert "city-ca" in listing
    assert PERSON not in listing
    with app.app_context():
        binding = db().scalar(select(CertificateBinding))
        assert binding is not None
        binding_id = binding.id
    answer = client.post(
        f"/account/certificates/{binding_id}/unbind", data={"csrf_token": csrf_token(listing)}
    )
    assert answer.status_code == 302
    with app.app_context():
        assert db().scalar(select(CertificateBinding)) is None
    # someone else's binding cannot be unbound
    assert (
        client.post(
            f"/account/certificates/{binding_id}/unbind", data={"csrf_token": csrf_token(listing)}
        ).status_code
        == 404
    )


def test_identity_cli_masks_the_number_and_hides_the_subject(
    app: Flask, city_ca: Issued, tmp_path: Path
) -> None:
    cert = write(tmp_path / "leaf.pem", person(city_ca))
    result = invoke(app, "identity", str(cert), "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["valid"] is True
    assert (found["ca"], found["kind"], found["identifier_type"]) == (
        "city-ca",
        "person",
        "resident_id",
    )
    assert PERSON not in result.output
    assert "王小丽" not in result.output
    assert found["identifier"] != PERSON
    assert found["identifier"][:3] == PERSON[:3]
    stranger = write(tmp_path / "stranger.pem", person(make_ca("Stranger", policies=[LOCAL])))
    refused = invoke(app, "identity", str(stranger), "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.output)["valid"] is False
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"garbage")
    bad = invoke(app, "identity", str(garbage), "--json")
    assert bad.exit_code == 1
    assert "Traceback" not in bad.output


def test_sign_challenge_cli_prints_the_form_fields(
    app: Flask, city_ca: Issued, tmp_path: Path
) -> None:
    cert = person(city_ca, key="rsa")
    cert_file = write(tmp_path / "c.pem", cert)
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(cert.key_pem)
    client = app.test_client()
    challenge, token = challenge_of(client)
    result = invoke(
        app, "sign-challenge", "--key", str(key_file), "--cert", str(cert_file),
        "--challenge", challenge, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    fields = json.loads(result.output)
    answer = client.post(
        "/login/certificate",
        data={"csrf_token": token, "challenge": challenge, **fields},
    )
    assert answer.status_code == 302
    other_key = tmp_path / "other.pem"
    other_key.write_bytes(person(city_ca).key_pem)
    refused = invoke(
        app, "sign-challenge", "--key", str(other_key), "--cert", str(cert_file),
        "--challenge", challenge,
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "does not belong" in refused.output


def test_an_enterprise_certificate_claims_its_organisation_at_level_5(
    app: Flask, city_ca: Issued
) -> None:
    """The legal-person registry knows the code and the certificate's name: the
    organisation is registered, reaches level 5 until the certificate's end, and the
    account that signs in with the enterprise's key administers it."""
    load_registry(app, f"number,name\n{USCC},示例科技有限公司\n", kind="organisation")
    cert = enterprise(city_ca)
    client = app.test_client()
    post_signed(client, cert)
    assert create_account_for_pending(client, "clerk").status_code == 302
    with app.app_context():
        accounts = Accounts.of()
        organisation = accounts.organisation_service().find(USCC)
        assert organisation is not None
        assert accounts.organisation_service().level(organisation) == 5
        clerk = accounts.account_service().find_by_username("clerk")
        assert clerk is not None
        (authorisation,) = accounts.authorisation_service().live_for(clerk)
        assert authorisation.organisation_id == organisation.id
        assert authorisation.role.value == "administrator"
        binding = db().scalar(select(CertificateBinding))
        assert binding is not None
        assert binding.organisation_id == organisation.id
    # signing in again keeps one authorisation
    assert post_signed(app.test_client(), cert).status_code == 302
    with app.app_context():
        clerk = Accounts.of().account_service().find_by_username("clerk")
        assert clerk is not None
        assert len(Accounts.of().authorisation_service().live_for(clerk)) == 1


def test_an_identity_refusal_is_said_in_the_readers_language(app: Flask, city_ca: Issued) -> None:
    """A CA that put a number with a wrong check character in the identity extension:
    the page names the problem in Chinese, the rule's source as configured."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    wrong = person(city_ca, number="110105194912310021")  # the check character is X
    page = post_signed(client, wrong).get_data(as_text=True)
    assert "校验码错误" in page
    assert f"ext:{GMT0015_IDENTITY_NUMBER}" in page
    assert "check character" not in page
    english = app.test_client()
    english.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert "check character wrong" in post_signed(english, wrong).get_data(as_text=True)
