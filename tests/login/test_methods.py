"""Sign-in methods plug into the flow: a package registers a method from its init_app
(here a test-only "key" method with its own view, like certificate sign-in will) and
the sign-in page, the second factor, the session, the audit log and the tokens follow."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

import pyotp
import pytest
from flask import Blueprint, Flask, request
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from accounts.container import Accounts
from accounts.credentials.signin import PASSWORD, TOTP
from federation.upstream.signin import FEDERATION
from idp.core.audit.models import AuditEvent
from idp.core.clock import FrozenClock
from idp.core.navigation import safe_next
from idp.core.runtime import Runtime, db
from idp.core.signin import (
    Cookie,
    Proof,
    SignInMethods,
    Stage,
    achieved_amr,
)
from idp.oauth.server import OAuthRuntime
from pki.signin import CERTIFICATE
from tests.oauth_support import RP, Flow, query_of, register
from tests.support import create_user, sign_in, submit, text

KEY_AMR: dict[str, tuple[str, ...]] = {"plain": ("hwk",), "pin": ("hwk", "pin", "mfa")}


class KeyMethod:
    """A first factor proved in its own view (``/test-key``): the test names the
    account and whether the key's PIN was given."""

    name = "test-key"
    stage = Stage.FIRST
    amr = frozenset({"hwk", "pin", "mfa"})
    label = "Sign in with a test key"

    def entry(self, next_url: str) -> str | None:
        return "/test-key?" + urlencode({"next": next_url})

    def applies(self, first: Proof) -> bool:  # noqa: ARG002 - the interface's signature
        return True

    def finished(self, proof: Proof) -> Sequence[Cookie]:
        return (Cookie("test_key", proof.sub, max_age=60, path="/", secure=False),)


def key_sign_in() -> ResponseReturnValue:
    user = Accounts.of().account_service().find_by_username(request.args["user"])
    assert user is not None
    proof = Proof(
        method=KeyMethod.name,
        uid=user.id,
        sub=user.public_id,
        subject=user.subject,
        amr=KEY_AMR[request.args["kind"]],
    )
    return SignInMethods.of().flow.proved(proof, safe_next(request.args.get("next")))


def init_app(app: Flask) -> None:
    """What a package (pki, federation) does: register its method and its view."""
    SignInMethods.of(app).register(KeyMethod())
    bp = Blueprint("test_key", __name__)
    bp.add_url_rule("/test-key", view_func=key_sign_in)
    app.register_blueprint(bp)


@pytest.fixture
def key_app(app: Flask) -> Flask:
    init_app(app)
    return app


def _enrol_totp(app: Flask, clock: FrozenClock, username: str = "alice") -> str:
    with app.app_context():
        user = Accounts.of().account_service().find_by_username(username)
        assert user is not None
        totp = Accounts.of().totp_service()
        secret = totp.begin_enrollment(user).secret
        totp.confirm_enrollment(user, pyotp.TOTP(secret).at(clock.now()))
    clock.advance(30)  # the enrolment's step is used up
    return secret


def _amr_of_session(client: FlaskClient) -> list[str]:
    with client.session_transaction() as session:
        return list(session["amr"])


def test_the_sign_in_page_links_to_registered_first_factors(
    key_app: Flask, client: FlaskClient
) -> None:
    page = text(client.get("/login?next=/account/profile"))
    assert 'href="/test-key?next=%2Faccount%2Fprofile"' in page
    assert "Sign in with a test key" in page
    # the password and code methods are forms, not links; pki's certificate method is
    # the other link
    assert 'href="/login/certificate?next=/account/profile"' in page
    assert page.count("<li><a") == 2


def test_the_certificate_method_is_the_only_link_by_default(client: FlaskClient) -> None:
    page = text(client.get("/login"))
    assert page.count("<li><a") == 1
    assert 'href="/login/certificate?next=/account"' in page


def test_a_registered_first_factor_signs_in_with_its_amr(
    key_app: Flask, client: FlaskClient
) -> None:
    create_user(key_app)
    response = client.get("/test-key?user=alice&kind=plain&next=/account/profile")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/profile"
    assert client.get_cookie("test_key") is not None  # the method's finished() cookies
    assert client.get("/account").status_code == 200
    assert _amr_of_session(client) == ["hwk"]
    with key_app.app_context():
        event = db().scalars(select(AuditEvent).where(AuditEvent.event == "signin")).one()
        # the methods and the account's level at sign-in count in the statistics
        assert event.details == {"amr": ["hwk"], "method": "test-key", "level": 1}


def test_the_second_factor_follows_a_first_factor_that_is_not_multi_factor(
    key_app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(key_app)
    secret = _enrol_totp(key_app, clock)
    response = client.get("/test-key?user=alice&kind=plain&next=/account/profile")
    assert response.headers["Location"] == "/login/otp"
    assert client.get("/account").status_code == 302  # not signed in yet
    done = submit(client, "/login/otp", {"otp": pyotp.TOTP(secret).at(clock.now())})
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/profile"
    assert _amr_of_session(client) == ["hwk", "otp", "mfa"]
    with key_app.app_context():
        event = db().scalars(select(AuditEvent).where(AuditEvent.event == "signin")).one()
        assert (event.details["method"], event.details["level"]) == ("test-key+totp", 1)
    # the password method's device cookie is not given: the password took no part
    assert client.get_cookie("idp_device", path="/login") is None


def test_a_multi_factor_first_factor_needs_no_second(
    key_app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(key_app)
    _enrol_totp(key_app, clock)
    response = client.get("/test-key?user=alice&kind=pin&next=/account")
    assert response.headers["Location"] == "/account"
    assert _amr_of_session(client) == ["hwk", "pin", "mfa"]


def test_the_method_amr_reaches_the_id_token_and_sets_the_acr(
    key_app: Flask, client: FlaskClient
) -> None:
    create_user(key_app)
    _, secret = register(key_app, "svc", first_party=True, scope="openid")
    rp = RP(key_app, "svc", secret)
    flow = Flow()
    response = rp.start(client, flow, "openid")
    assert response.headers["Location"].startswith("/login?")
    next_url = query_of(response.headers["Location"])["next"]
    response = client.get(
        "/test-key?" + urlencode({"user": "alice", "kind": "plain", "next": next_url})
    )
    for _ in range(3):
        if response.headers["Location"].startswith(rp.redirect_uri):
            break
        response = client.get(response.headers["Location"])
    code = query_of(response.headers["Location"])["code"]
    tokens = rp.redeem(client, code, flow).get_json()
    with key_app.app_context():
        _, claims = OAuthRuntime.of().keys.verify(tokens["id_token"])
    assert claims["amr"] == ["hwk"]
    assert claims["acr"] == Runtime.of(key_app).settings.acr_mfa


def test_password_and_totp_are_registered_by_accounts(app: Flask) -> None:
    methods = SignInMethods.of(app)
    names = [method.name for method in methods]
    # then pki's and federation's
    assert names == [PASSWORD, TOTP, CERTIFICATE, FEDERATION]
    assert methods.form(PASSWORD).stage is Stage.FIRST
    assert methods.form(TOTP).stage is Stage.SECOND


def test_a_name_is_registered_once(key_app: Flask) -> None:
    with pytest.raises(ValueError, match="already registered"):
        SignInMethods.of(key_app).register(KeyMethod())


def test_the_password_sign_in_goes_through_the_flow_unchanged(
    app: Flask, client: FlaskClient
) -> None:
    create_user(app)
    response = sign_in(client)
    assert response.headers["Location"] == "/account"
    assert _amr_of_session(client) == ["pwd"]
    assert client.get_cookie("idp_device", path="/login") is not None


def _proof(method: str, *amr: str) -> Proof:
    return Proof(method=method, uid=1, sub="s", subject="user:s", amr=amr)


@pytest.mark.parametrize(
    ("proofs", "expected"),
    [
        ([_proof("password", "pwd")], ["pwd"]),
        ([_proof("password", "pwd"), _proof("totp", "otp")], ["pwd", "otp", "mfa"]),
        ([_proof("key", "hwk", "pin", "mfa")], ["hwk", "pin", "mfa"]),
        ([_proof("key", "hwk"), _proof("totp", "otp")], ["hwk", "otp", "mfa"]),
        ([_proof("fed", "fed", "mfa"), _proof("totp", "otp")], ["fed", "mfa", "otp"]),
    ],
)
def test_the_achieved_amr(proofs: list[Proof], expected: list[str]) -> None:
    assert achieved_amr(proofs) == expected


def test_a_proof_survives_the_pending_state() -> None:
    proof = Proof(
        method="password",
        uid=7,
        sub="abc",
        subject="user:abc",
        amr=("pwd",),
        device_id="dev",
        state={"account_key": "k"},
    )
    assert Proof.from_json(proof.to_json()) == proof


class _Second:
    """A second factor that applies or not (for the registry's choice)."""

    stage = Stage.SECOND
    amr = frozenset({"otp"})
    label = "second"

    def __init__(self, name: str, applies: bool) -> None:
        self.name = name
        self._applies = applies

    def entry(self, next_url: str) -> str | None:  # noqa: ARG002 - the interface's signature
        return None

    def applies(self, first: Proof) -> bool:  # noqa: ARG002 - the interface's signature
        return self._applies

    def finished(self, proof: Proof) -> Sequence[Cookie]:  # noqa: ARG002 - the interface's signature
        return ()


class _NoFlow:
    def proved(self, proof: Proof, next_url: str) -> ResponseReturnValue:  # noqa: ARG002
        raise AssertionError("not driven here")

    def count(self, step: str, outcome: str) -> None:  # noqa: ARG002
        raise AssertionError("not driven here")


def test_the_registry_chooses_the_first_second_factor_that_applies() -> None:
    methods = SignInMethods(_NoFlow())
    no, yes = _Second("no", applies=False), _Second("yes", applies=True)
    for method in (KeyMethod(), no, yes):
        methods.register(method)
    assert methods.second_factor_for(_proof("test-key", "hwk")) is yes
    assert methods.second_factor_for(_proof("test-key", "hwk", "pin", "mfa")) is None
    assert [link.label for link in methods.links("/account")] == [KeyMethod.label]
    with pytest.raises(KeyError):
        methods.form("test-key")  # not a form-driven method
