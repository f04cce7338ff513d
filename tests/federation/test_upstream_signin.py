"""Signing in with an upstream provider, from the browser's side and the attacker's: a
small misbehaving OpenID provider on a free port (``fake_upstream``), the mapping
rules, the account's links, and every refusal (a page, an audit event, nobody signed
in)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from accounts.container import Accounts
from accounts.realname.services import DocumentClaim, VerificationMethod
from federation.upstream.cli import federation_group
from federation.upstream.models import Upstream, UpstreamLink
from idp.core.audit.models import AuditEvent
from idp.core.runtime import db
from tests.federation.fake_upstream import CLIENT_ID, CLIENT_SECRET, FakeUpstream
from tests.support import create_user, csrf_token, sign_in, text

PERSON = "11010519491231002X"
NAME = "王小丽"


def invoke(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(federation_group, list(args), catch_exceptions=False)


def invoke_json(app: Flask, *args: str) -> Any:
    result = invoke(app, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def add_fake(app: Flask, fake: FakeUpstream, *extra: str) -> Any:
    return invoke_json(
        app, "add-upstream", "--name", "province", "--issuer", fake.url,
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
        "--scope", "openid profile realname",
        "--identity-claim", "id_number", "--identity-type", "resident_id",
        "--level-claim", "level", "--level-map", "gov:3=3", "--level-map", "gov:2=2",
        "--link-min-level", "3", *extra,
    )  # fmt: skip


def round_trip(
    client: FlaskClient, fake: FakeUpstream, *, next_url: str | None = None
) -> TestResponse:
    start = client.get(
        "/federation/province/login" + (f"?{urlencode({'next': next_url})}" if next_url else "")
    )
    assert start.status_code == 302, text(start)
    return client.get("/federation/province/callback?" + urlencode(fake.authorize(start.location)))


def signed_in_as(client: FlaskClient) -> str | None:
    page = client.get("/account")
    if page.status_code != 200:
        return None
    return text(page)


def failures(app: Flask) -> list[str]:
    with app.app_context():
        events = db().scalars(
            select(AuditEvent).where(
                AuditEvent.event == "federation.signin", AuditEvent.outcome == "failure"
            )
        )
        return [str(event.details.get("reason")) for event in events]


def confirmed_holder(app: Flask, username: str = "holder", level: int = 5) -> int:
    user = create_user(app, username)
    with app.app_context():
        Accounts.of().realname_service().record_verification(
            Accounts.of().account_service().get(user.id),  # type: ignore[arg-type]
            method=VerificationMethod.COUNTER,
            level=level,
            source="counter:test",
            document=DocumentClaim.checked(NAME, PERSON),
        )
    return user.id


def level_of(app: Flask, user_id: int) -> int:
    with app.app_context():
        user = Accounts.of().account_service().get(user_id)
        assert user is not None
        return Accounts.of().realname_service().level(user)


def links(app: Flask) -> list[UpstreamLink]:
    with app.app_context():
        return list(db().scalars(select(UpstreamLink)))


# -- the command line ----------------------------------------------------------------------


def test_add_upstream_prints_the_redirect_uri_and_never_the_secret(
    app: Flask, fake: FakeUpstream
) -> None:
    added = add_fake(app, fake)
    assert added["redirect_uri"] == "http://localhost/federation/province/callback"
    assert added["level_map"] == [{"theirs": "gov:3", "ours": 3}, {"theirs": "gov:2", "ours": 2}]
    assert added["token_auth_method"] == "client_secret_basic"
    listed = invoke_json(app, "list")
    assert [u["name"] for u in listed] == ["province"]
    assert CLIENT_SECRET not in json.dumps(listed) + json.dumps(added)
    with app.app_context():
        row = db().scalar(select(Upstream))
        assert row is not None
        assert row.client_secret_encrypted
        assert CLIENT_SECRET not in row.client_secret_encrypted
        assert row.discovery is not None
        assert row.discovery["issuer"] == fake.url
    assert invoke(app, "remove", "province").exit_code == 0
    assert invoke_json(app, "list") == []
    assert invoke(app, "remove", "province").exit_code == 1


def test_add_upstream_refuses_what_it_cannot_check(app: Flask, fake: FakeUpstream) -> None:
    fake.mode.add("wrong_discovery_issuer")
    refused = invoke(app, "add-upstream", "--name", "p", "--issuer", fake.url,
                     "--client-id", "c", "--client-secret", "s", "--json")  # fmt: skip
    assert refused.exit_code == 1
    assert "another issuer" in json.loads(refused.output)["error"]
    down = invoke(app, "add-upstream", "--name", "p", "--issuer", "http://127.0.0.1:9",
                  "--client-id", "c", "--client-secret", "s")  # fmt: skip
    assert down.exit_code == 1
    assert "cannot be fetched" in down.output
    plain = invoke(app, "add-upstream", "--name", "p", "--issuer", "http://province.example",
                   "--client-id", "c", "--client-secret", "s")  # fmt: skip
    assert plain.exit_code == 2
    assert "loopback" in plain.output
    assert "Traceback" not in plain.output + down.output + refused.output
    assert invoke_json(app, "list") == []


# -- the sign-in page and the round trip -----------------------------------------------


def test_the_sign_in_page_links_to_each_upstream(upstream_app: Flask) -> None:
    page = text(upstream_app.test_client().get("/login?next=/authorize/continue%3Frid%3Dabc"))
    assert "/federation/province/login?next=/authorize/continue?rid%3Dabc" in page


def test_a_display_name_is_what_people_see_the_upstream_called(
    app: Flask, fake: FakeUpstream
) -> None:
    """The sign-in page, the first sign-in and the linked sign-ins pages say the display
    name; the addresses keep the short name."""
    hall = "广东省网上办事大厅"
    added = add_fake(app, fake, "--display-name", f"  {hall} ")
    assert added["display_name"] == hall  # trimmed
    assert invoke_json(app, "list")[0]["display_name"] == hall
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    login = text(client.get("/login"))
    assert f"通过 {hall} 登录" in login
    assert "/federation/province/login" in login
    choice = round_trip(client, fake)
    first = text(client.get(choice.location))
    assert hall in first
    create_user(app, "alice")
    link_url = first.split('href="')[-1].split('"')[0].replace("&amp;", "&")
    sign_in(client, "alice", form_url=link_url)
    confirm = client.get("/federation/link")
    assert hall in text(confirm)
    client.post("/federation/link", data={"csrf_token": csrf_token(text(confirm))})
    assert hall in text(client.get("/account/federation"))
    for bad in ("", "x" * 101, "a\nb"):
        refused = invoke(
            app, "add-upstream", "--name", "other", "--issuer", fake.url + "/x",
            "--client-id", "c", "--client-secret", "s", "--display-name", bad,
        )  # fmt: skip
        assert refused.exit_code == 2, refused.output
        assert "display-name" in refused.output


def test_first_sign_in_creates_an_account_at_the_mapped_level_then_reuses_the_link(
    upstream_app: Flask, fake: FakeUpstream
) -> None:
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3", "email": "a@example.com"}
    client = upstream_app.test_client()
    choice = round_trip(client, fake, next_url="/account/services")
    assert choice.status_code == 302
    assert choice.location.startswith("/federation/new")
    page = client.get(choice.location)
    assert "Create a new account" in text(page) or "创建" in text(page)
    created = client.post(
        "/federation/new",
        data={"csrf_token": csrf_token(text(page)), "next": "/account/services"},
    )
    assert created.status_code == 302
    assert created.location == "/account/services"  # the pending request continues
    assert signed_in_as(client) is not None
    [link] = links(upstream_app)
    assert link.subject == fake.subject
    assert level_of(upstream_app, link.user_id) == 3
    listed = invoke_json(upstream_app, "links")
    assert listed[0]["upstream"] == "province"
    assert listed[0]["upstream_subject"] == fake.subject
    # the second sign-in, in another browser: the link, no new account, straight in
    second = upstream_app.test_client()
    answer = round_trip(second, fake)
    assert answer.status_code == 302
    assert answer.location == "/account"
    assert len(links(upstream_app)) == 1
    assert signed_in_as(second) is not None


def test_a_verified_assertion_links_the_account_holding_the_identity(
    upstream_app: Flask, fake: FakeUpstream
) -> None:
    holder = confirmed_holder(upstream_app, level=3)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    client = upstream_app.test_client()
    answer = round_trip(client, fake)
    assert answer.location == "/account"
    assert "holder" in (signed_in_as(client) or "")
    [link] = links(upstream_app)
    assert link.user_id == holder
    assert level_of(upstream_app, holder) == 3  # never lowered
    with upstream_app.app_context():
        [event] = db().scalars(select(AuditEvent).where(AuditEvent.event == "federation.link"))
        assert event.outcome == "success"
        assert event.details == {"upstream": "province"}


def test_an_unverified_assertion_of_a_confirmed_number_signs_nobody_in_and_links_nothing(
    upstream_app: Flask, fake: FakeUpstream
) -> None:
    holder = confirmed_holder(upstream_app)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:2"}
    client = upstream_app.test_client()
    choice = round_trip(client, fake)
    assert choice.location.startswith("/federation/new")
    assert signed_in_as(client) is None
    assert links(upstream_app) == []
    page = text(client.get(choice.location))
    assert "holder" not in page
    assert "already verified for another account" in page or "已" in page
    created = client.post("/federation/new", data={"csrf_token": csrf_token(page)})
    assert created.status_code == 302
    account = signed_in_as(client) or ""
    assert "holder" not in account
    [link] = links(upstream_app)
    assert link.user_id != holder
    assert level_of(upstream_app, link.user_id) <= 2
    with upstream_app.app_context():
        new = Accounts.of().account_service().get(link.user_id)
        assert new is not None
        assert Accounts.of().realname_service().identity_of(new) is None  # no claim on it


def test_e_mail_and_name_never_link(upstream_app: Flask, fake: FakeUpstream) -> None:
    confirmed_holder(upstream_app)
    fake.claims = {"email": "holder@example.com", "name": NAME, "level": "gov:3"}
    client = upstream_app.test_client()
    choice = round_trip(client, fake)
    assert choice.location.startswith("/federation/new")
    assert links(upstream_app) == []
    page = text(client.get(choice.location))
    client.post("/federation/new", data={"csrf_token": csrf_token(page)})
    [link] = links(upstream_app)
    assert level_of(upstream_app, link.user_id) == 1  # no valid identity claim: level 1


def test_the_person_may_link_an_account_they_sign_in_to(
    upstream_app: Flask, fake: FakeUpstream
) -> None:
    create_user(upstream_app, "alice")
    client = upstream_app.test_client()
    choice = round_trip(client, fake)
    page = text(client.get(choice.location))
    link_url = page.split('href="')[-1].split('"')[0].replace("&amp;", "&")
    assert link_url.startswith("/login?next=")
    assert sign_in(client, "alice", form_url=link_url).status_code == 302
    confirm = client.get("/federation/link")
    assert confirm.status_code == 200
    linked = client.post("/federation/link", data={"csrf_token": csrf_token(text(confirm))})
    assert linked.status_code == 302
    [link] = links(upstream_app)
    with upstream_app.app_context():
        assert Accounts.of().account_service().find_by_username("alice").id == link.user_id  # type: ignore[union-attr]
    # the account page lists it; unlinking is allowed (alice has a password)
    listing = client.get("/account/federation")
    assert "province" in text(listing)
    unlink = client.post(
        f"/account/federation/{link.id}/unlink", data={"csrf_token": csrf_token(text(listing))}
    )
    assert unlink.status_code == 302
    assert links(upstream_app) == []


def test_the_last_way_to_sign_in_cannot_be_unlinked(
    upstream_app: Flask, fake: FakeUpstream
) -> None:
    client = upstream_app.test_client()
    choice = round_trip(client, fake)
    page = text(client.get(choice.location))
    client.post("/federation/new", data={"csrf_token": csrf_token(page)})
    [link] = links(upstream_app)
    listing = client.get("/account/federation")
    refused = client.post(
        f"/account/federation/{link.id}/unlink",
        data={"csrf_token": csrf_token(text(listing))},
        follow_redirects=True,
    )
    assert refused.status_code == 200
    assert len(links(upstream_app)) == 1
    with upstream_app.app_context():
        events = db().scalars(select(AuditEvent).where(AuditEvent.event == "federation.unlink"))
        assert [e.outcome for e in events] == ["failure"]


# -- the attacker's side -----------------------------------------------------------------

REFUSALS = [
    ("tampered", "id_token_signature"),
    ("unknown_key", "id_token_signature"),
    ("wrong_iss", "id_token_iss"),
    ("wrong_aud", "id_token_aud"),
    ("wrong_nonce", "id_token_nonce"),
    ("expired", "id_token_exp"),
    ("alg_none", "id_token_alg"),
    ("hs256", "id_token_alg"),
    ("two_audiences", "id_token_azp"),
    ("userinfo_sub", "userinfo_sub_mismatch"),
    ("wrong_iss_param", "iss_mismatch"),
]


@pytest.mark.parametrize(("mode", "reason"), REFUSALS)
def test_a_bad_answer_signs_nobody_in(
    upstream_app: Flask, fake: FakeUpstream, mode: str, reason: str
) -> None:
    confirmed_holder(upstream_app)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    fake.mode.add(mode)
    client = upstream_app.test_client()
    answer = round_trip(client, fake)
    assert answer.status_code == 400
    assert "<html" in text(answer).lower()
    assert signed_in_as(client) is None
    assert links(upstream_app) == []
    assert failures(upstream_app) == [reason]


def test_a_replayed_callback_or_one_in_another_browser_signs_nobody_in(
    upstream_app: Flask, fake: FakeUpstream
) -> None:
    confirmed_holder(upstream_app)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    victim = upstream_app.test_client()
    start = victim.get("/federation/province/login")
    callback = "/federation/province/callback?" + urlencode(fake.authorize(start.location))
    # the attacker's browser opens the victim's callback: no binding cookie
    attacker = upstream_app.test_client()
    assert attacker.get(callback).status_code == 400
    assert signed_in_as(attacker) is None
    # and the state is gone: the victim's own (replayed) callback fails too
    assert victim.get(callback).status_code == 400
    assert signed_in_as(victim) is None
    # a fresh round trip works; replaying its callback afterwards does not
    client = upstream_app.test_client()
    start = client.get("/federation/province/login")
    callback = "/federation/province/callback?" + urlencode(fake.authorize(start.location))
    assert client.get(callback).status_code == 302
    assert client.get(callback).status_code == 400
    assert failures(upstream_app).count("state_unknown") == 3


def test_an_unknown_kid_refetches_the_key_set_once(upstream_app: Flask, fake: FakeUpstream) -> None:
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    confirmed_holder(upstream_app, level=3)
    before = fake.jwks_fetches
    fake.rotate()
    client = upstream_app.test_client()
    # a pending authorization request survives the round trip
    pending = "/authorize/continue?rid=abc"
    assert round_trip(client, fake, next_url=pending).location == pending
    assert fake.jwks_fetches == before + 1


def test_a_disabled_account_is_not_signed_in(upstream_app: Flask, fake: FakeUpstream) -> None:
    confirmed_holder(upstream_app, level=3)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    result = upstream_app.test_cli_runner().invoke(args=["users", "disable", "holder"])
    assert result.exit_code == 0, result.output
    client = upstream_app.test_client()
    assert round_trip(client, fake).status_code == 403
    assert signed_in_as(client) is None
    assert failures(upstream_app) == ["disabled"]


@pytest.mark.parametrize("mode", ["down", "slow"])
def test_an_upstream_down_or_slow_is_a_clear_page(
    upstream_app: Flask, fake: FakeUpstream, mode: str
) -> None:
    fake.mode.add(mode)
    client = upstream_app.test_client()
    answer = round_trip(client, fake)
    assert answer.status_code == 502
    assert signed_in_as(client) is None
    assert failures(upstream_app) == ["token_unreachable"]
