"""RFC 8693 token exchange, mostly from the attacker's side: a service exchanges the
token it received for one for a downstream service (A -> B -> C, nested ``act``), and
never gets more than the subject token had: more scope, an audience not registered for
it, a revoked or foreign subject token, an organisation it did not act for. Revoking
the parent grant revokes the exchanged tokens."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

from accounts.container import Accounts
from accounts.organisations.authorisations import Scope
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.exchange import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, TokenExchangeGrant
from idp.oauth.models import Grant
from idp.oauth.server import OAuthRuntime
from tests.accounts.test_authorisations import REP_ID, REP_NAME, _verified, registry
from tests.accounts.test_organisations import ACME_CODE, ACME_NAME
from tests.accounts.test_realname import audit_events
from tests.oauth_support import RP, register
from tests.support import create_user
from tests.test_cli import env, run

__all__ = ["env", "registry"]  # fixtures

A_SCOPE = "openid profile offline_access api.a api.b api.c"


@pytest.fixture
def services(app: Flask) -> dict[str, RP]:
    """C is the end of the chain; B may exchange for C; A (signs users in) for B."""
    create_user(app)
    _, c_secret = register(
        app, "svc-c", grant_types=["client_credentials"], scope="api.c", redirect_uris=[]
    )
    _, b_secret = register(
        app,
        "svc-b",
        grant_types=["client_credentials"],
        scope="api.b api.c",
        redirect_uris=[],
        exchange_audiences=["svc-c"],
    )
    _, a_secret = register(
        app,
        "svc-a",
        first_party=True,
        scope=A_SCOPE,
        grant_types=["authorization_code", "refresh_token"],
        exchange_audiences=["svc-b"],
    )
    return {
        "a": RP(app, "svc-a", a_secret),
        "b": RP(app, "svc-b", b_secret),
        "c": RP(app, "svc-c", c_secret),
    }


def exchange(rp: RP, client: FlaskClient, token: str, **params: str) -> TestResponse:
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        **params,
    }
    return rp.token_request(client, data)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


def last_exchange_event(app: Flask) -> Any:
    return max(audit_events(app, "token.exchange"), key=lambda event: event.seq)


def refused(response: TestResponse, error: str) -> None:
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error, body
    assert "access_token" not in body


def signed_in(rp: RP, client: FlaskClient, username: str = "alice") -> dict[str, Any]:
    tokens, _ = rp.tokens(client, username=username, scope=A_SCOPE)
    return tokens


def active(rp: RP, client: FlaskClient, token: str) -> bool:
    answer: bool = rp.post(client, "/introspect", {"token": token}).get_json()["active"]
    return answer


def test_a_chain_a_b_c_with_nested_act(
    app: Flask, client: FlaskClient, services: dict[str, RP]
) -> None:
    a, b, c = services["a"], services["b"], services["c"]
    first = signed_in(a, client)
    subject = claims_of(first["access_token"])

    to_b = exchange(a, client, first["access_token"], audience="svc-b", scope="api.b api.c")
    assert to_b.status_code == 200, to_b.get_data(as_text=True)
    issued = to_b.get_json()
    assert issued["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert issued["token_type"] == "Bearer"
    assert issued["scope"] == "api.b api.c"
    assert "refresh_token" not in issued
    for_b = claims_of(issued["access_token"])
    assert for_b["aud"] == "svc-b"
    assert for_b["client_id"] == "svc-a"
    assert for_b["sub"] == subject["sub"]
    assert for_b["act"] == {"sub": "svc-a"}
    assert for_b["exp"] <= subject["exp"]
    assert (for_b["amr"], for_b["auth_time"]) == (subject["amr"], subject["auth_time"])

    # B received it and passes it on to C, named as an RFC 8707 resource this time
    to_c = exchange(b, client, issued["access_token"], resource="svc-c")
    assert to_c.status_code == 200, to_c.get_data(as_text=True)
    for_c = claims_of(to_c.get_json()["access_token"])
    assert for_c["aud"] == "svc-c"
    assert for_c["sub"] == subject["sub"]
    assert for_c["scope"] == "api.c"  # what C is registered for, out of B's token
    assert for_c["act"] == {"sub": "svc-b", "act": {"sub": "svc-a"}}

    # C checks it by introspection and sees the chain (RFC 8693 2.1)
    seen = c.post(client, "/introspect", {"token": to_c.get_json()["access_token"]}).get_json()
    assert seen["active"] is True
    assert seen["act"] == {"sub": "svc-b", "act": {"sub": "svc-a"}}
    with app.app_context():
        grants = {g.client_id: g for g in db().query(Grant).filter(Grant.act.is_not(None))}
        assert grants["svc-b"].parent_grant_id == grants["svc-a"].id
        assert grants["svc-a"].parent_grant_id == subject["gid"]
        events = [e for e in audit_events(app, "token.exchange") if e.outcome == "success"]
    assert [e.details["audience"] for e in events] == ["svc-b", "svc-c"]

    discovery = client.get("/.well-known/openid-configuration").get_json()
    assert TOKEN_EXCHANGE in discovery["grant_types_supported"]


def test_the_scope_only_narrows(client: FlaskClient, services: dict[str, RP]) -> None:
    a = services["a"]
    token = signed_in(a, client)["access_token"]
    # by default: what the audience may have, never openid or offline_access
    default = exchange(a, client, token, audience="svc-b").get_json()
    assert default["scope"] == "api.b api.c"
    narrowed = exchange(a, client, token, audience="svc-b", scope="api.c").get_json()
    assert narrowed["scope"] == "api.c"
    # the narrowed token cannot be widened again downstream
    widened = exchange(services["b"], client, narrowed["access_token"], audience="svc-c")
    assert widened.get_json()["scope"] == "api.c"
    refused(
        exchange(services["b"], client, narrowed["access_token"], audience="svc-c", scope="api.b"),
        "invalid_scope",
    )


@pytest.mark.parametrize(
    "scope",
    [
        "api.b admin",  # more than the subject token has
        "api.a",  # the subject token's, but not registered for the audience
        "openid api.b",  # would reach userinfo under another client's release rules
        "offline_access",  # exchanged tokens are not refreshed
    ],
)
def test_more_scope_is_refused(
    app: Flask, client: FlaskClient, services: dict[str, RP], scope: str
) -> None:
    a = services["a"]
    token = signed_in(a, client)["access_token"]
    refused(exchange(a, client, token, audience="svc-b", scope=scope), "invalid_scope")
    refusal = last_exchange_event(app)
    assert (refusal.outcome, refusal.details["error"]) == ("failure", "invalid_scope")
    assert refusal.actor == "client:svc-a"


@pytest.mark.parametrize(
    "target",
    [
        {"audience": "svc-c"},  # registered, but not one of A's exchange audiences
        {"audience": "nobody"},
        {"resource": "https://elsewhere.example/api"},
        {"audience": "svc-b", "resource": "svc-c"},  # two targets
    ],
)
def test_an_audience_not_registered_for_the_client_is_refused(
    app: Flask, client: FlaskClient, services: dict[str, RP], target: dict[str, str]
) -> None:
    a = services["a"]
    token = signed_in(a, client)["access_token"]
    refused(exchange(a, client, token, **target), "invalid_target")
    assert last_exchange_event(app).details["error"] == "invalid_target"


def test_a_revoked_or_expired_subject_token_is_refused(
    client: FlaskClient, services: dict[str, RP], clock: FrozenClock
) -> None:
    a = services["a"]
    token = signed_in(a, client)["access_token"]
    assert a.post(client, "/revoke", {"token": token}).status_code == 200
    refused(exchange(a, client, token, audience="svc-b"), "invalid_grant")

    later = signed_in(a, client)["access_token"]
    clock.advance(claims_of(later)["exp"] - claims_of(later)["iat"] + 1)
    refused(exchange(a, client, later, audience="svc-b"), "invalid_grant")
    refused(exchange(a, client, "not-a-token", audience="svc-b"), "invalid_grant")


def test_a_client_may_only_exchange_tokens_issued_to_it(
    app: Flask, client: FlaskClient, services: dict[str, RP]
) -> None:
    a, b = services["a"], services["b"]
    token = signed_in(a, client)["access_token"]
    # B got hold of A's token: not B's to exchange (its audience is A)
    refused(exchange(b, client, token, audience="svc-c"), "invalid_grant")
    # A holds the token it got for B, but may not exchange it again: it is B's
    for_b = exchange(a, client, token, audience="svc-b").get_json()["access_token"]
    with app.app_context():
        OAuthRuntime.of().clients.update(db(), "svc-a", exchange_audiences=["svc-b", "svc-c"])
    refused(exchange(a, client, for_b, audience="svc-c"), "invalid_grant")
    refusal = last_exchange_event(app)
    assert refusal.subject is not None
    assert refusal.subject.startswith("user:")


def test_revoking_the_parent_revokes_the_exchanged_tokens(
    client: FlaskClient, services: dict[str, RP]
) -> None:
    a, b, c = services["a"], services["b"], services["c"]
    first = signed_in(a, client)
    for_b = exchange(a, client, first["access_token"], audience="svc-b").get_json()
    for_c = exchange(b, client, for_b["access_token"], audience="svc-c").get_json()
    assert active(c, client, for_c["access_token"])
    # the user's grant at A ends (its refresh token revoked): the whole chain with it
    revoked = a.post(
        client, "/revoke", {"token": first["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert revoked.status_code == 200
    assert not active(c, client, first["access_token"])
    assert not active(c, client, for_b["access_token"])
    assert not active(c, client, for_c["access_token"])
    refused(exchange(b, client, for_b["access_token"], audience="svc-c"), "invalid_grant")


def test_who_may_exchange_and_how_to_ask(
    app: Flask, client: FlaskClient, services: dict[str, RP]
) -> None:
    a, c = services["a"], services["c"]
    token = signed_in(a, client)["access_token"]
    # C is registered for no exchange
    refused(exchange(c, client, token, audience="svc-b"), "unauthorized_client")
    # a public client cannot exchange at all
    register(app, "spa", public=True, exchange_audiences=["svc-b"])
    spa = client.post(
        "/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "client_id": "spa",
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": "svc-b",
        },
    )
    refused(spa, "invalid_client")
    for params in (
        {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
        {"subject_token_type": ""},
        {"subject_token": ""},
        {"actor_token": token, "actor_token_type": ACCESS_TOKEN_TYPE},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        {"audience": ""},
    ):
        data = {"audience": "svc-b", **params}
        response = exchange(a, client, params.get("subject_token", token), **data)
        refused(response, "invalid_request")
    # an unauthenticated request is no exchange either
    anonymous = client.post(
        "/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": "svc-b",
        },
    )
    refused(anonymous, "invalid_client")


def test_the_audiences_real_name_level_is_required(
    app: Flask, client: FlaskClient, services: dict[str, RP]
) -> None:
    a = services["a"]
    token = signed_in(a, client)["access_token"]  # alice is level 1
    with app.app_context():
        OAuthRuntime.of().clients.update(db(), "svc-b", min_level=3)
    refused(exchange(a, client, token, audience="svc-b"), "invalid_target")


# -- acting for an organisation


def _acting_for(app: Flask, access_token: str, authorisation: str) -> None:
    """What the authorize flow records when the person picked an organisation."""
    with app.app_context():
        db().execute(
            update(Grant)
            .where(Grant.id == claims_of(access_token)["gid"])
            .values(authorisation_id=authorisation)
        )
        db().commit()


def _grant_of(app: Flask, access_token: str) -> Grant:
    with app.app_context():
        grant = db().get(Grant, claims_of(access_token)["gid"])
        assert grant is not None
        db().expunge(grant)
        return grant


def test_the_organisation_context_is_carried_and_never_added(
    app: Flask, client: FlaskClient, services: dict[str, RP], registry: None
) -> None:
    a, b = services["a"], services["b"]
    _verified(app, "rep", REP_NAME, REP_ID)
    with app.app_context():
        accounts = Accounts.of()
        people = accounts.account_service()
        rep = people.find_by_username("rep")
        assert rep is not None
        service = accounts.authorisation_service()
        service.claim(rep, ACME_CODE, ACME_NAME)
        organisation = accounts.organisation_service().find(ACME_CODE)
        assert organisation is not None
        agent = create_user(app, "agent")
        offered = service.invite(
            rep,
            organisation,
            user=people.get(agent.id),
            scope=Scope(all_services=False, clients=("svc-a", "svc-b")),
        )
        authorisation = service.confirm(people.get(agent.id), offered.public_id)  # type: ignore[arg-type]
        authorisation_id = authorisation.public_id

    # personal: the exchanged grant is personal too, though the person could act for one
    personal = signed_in(a, client, "agent")["access_token"]
    for_b = exchange(a, client, personal, audience="svc-b").get_json()["access_token"]
    assert _grant_of(app, for_b).authorisation_id is None

    # acting for the organisation: the same authorisation, asked again each time
    acting = signed_in(a, app.test_client(), "agent")["access_token"]
    _acting_for(app, acting, authorisation_id)
    for_b = exchange(a, client, acting, audience="svc-b").get_json()["access_token"]
    child = _grant_of(app, for_b)
    assert child.authorisation_id == authorisation_id
    # the authorisation names A and B only: B may not take it on to C
    refused(exchange(b, client, for_b, audience="svc-c"), "invalid_target")
    # revoked by the organisation: no more exchanges under it
    with app.app_context():
        accounts = Accounts.of()
        rep = accounts.account_service().find_by_username("rep")
        assert rep is not None
        accounts.authorisation_service().revoke(rep, authorisation_id)
    refused(exchange(a, client, acting, audience="svc-b"), "invalid_grant")


# -- the command line


def test_exchange_audiences_from_the_command_line(env: dict[str, str]) -> None:
    # this checkout's code, also where the installed ``idp`` script points elsewhere
    env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    assert run(["init"], env).returncode == 0
    backend = ["clients", "create", "--grant-type", "client_credentials", "--scope", "api"]
    assert run([*backend, "--client-id", "tax-api"], env).returncode == 0
    assert run([*backend, "--client-id", "land-api"], env).returncode == 0
    created = run(
        [*backend, "--client-id", "portal", "--exchange-audience", "tax-api", "--json"], env
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["exchange_audiences"] == ["tax-api"]
    unknown = run([*backend, "--client-id", "other", "--exchange-audience", "nobody"], env)
    assert unknown.returncode == 1
    assert "not a registered client" in unknown.stderr

    update = ["clients", "update", "portal", "--json"]
    both = run([*update, "--exchange-audience", "tax-api", "--exchange-audience", "land-api"], env)
    assert json.loads(both.stdout)["exchange_audiences"] == ["tax-api", "land-api"]
    itself = run([*update, "--exchange-audience", "portal"], env)
    assert itself.returncode == 1
    cleared = run([*update, "--no-exchange-audiences"], env)
    assert json.loads(cleared.stdout)["exchange_audiences"] == []


def test_an_exchange_racing_with_the_revocation_of_its_parent(
    app: Flask, client: FlaskClient, services: dict[str, RP], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent is revoked after the exchange checked it, and the revocation looked
    for exchanged grants before this one was committed: the exchange must see it."""
    a = services["a"]
    token = signed_in(a, client)["access_token"]
    checked = TokenExchangeGrant._checked

    def revoked_meanwhile(grant: TokenExchangeGrant, requester: Any) -> Any:
        found = checked(grant, requester)
        with app.app_context():  # another request's transaction, committed
            db().execute(
                update(Grant)
                .where(Grant.id == claims_of(token)["gid"])
                .values(revoked_at=OAuthRuntime.of().core.clock.now(), revoked_reason="test")
            )
            db().commit()
        return found

    monkeypatch.setattr(TokenExchangeGrant, "_checked", revoked_meanwhile)
    refused(exchange(a, client, token, audience="svc-b"), "invalid_grant")
    with app.app_context():
        child = db().query(Grant).filter(Grant.parent_grant_id == claims_of(token)["gid"]).one()
        assert child.revoked_at is not None


def test_a_personal_token_is_not_exchanged_for_an_organisations_only_service(
    app: Flask, client: FlaskClient, services: dict[str, RP]
) -> None:
    a = services["a"]
    token = signed_in(a, client)["access_token"]
    with app.app_context():
        OAuthRuntime.of().clients.update(db(), "svc-b", require_org=True)
    refused(exchange(a, client, token, audience="svc-b"), "invalid_target")
    assert last_exchange_event(app).details["error"] == "invalid_target"
