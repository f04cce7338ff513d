"""A client's own vocabulary for our real-name levels (issue 13 part 3: the provincial
hall signs in with the city): ``idp clients create|update --level-map OURS=THEIRS``.
The acr in its ID tokens and the assurance level in its verified_claims use its
values; its acr_values are read back into ours; other clients and discovery are
unchanged (decision 37)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.core.runtime import db
from idp.oauth.clients import ClientError
from idp.oauth.server import OAuthRuntime
from tests.accounts.test_realname import ALICE_ID, ALICE_NAME, verify
from tests.oauth.test_assurance import (
    LEVEL,
    PWD,
    SCOPE,
    alice,
    follow_to_page,
    make_rp,
    redeem,
    refresh,
    rid_of,
    start,
    userinfo,
)
from tests.oauth.test_basic_op import claims_of
from tests.oauth_support import Flow
from tests.support import sign_in
from tests.support import text as body
from tests.test_cli import env, run

__all__ = ["alice", "env"]  # fixtures

# the province's values; one holds "=" (an acr URI may), as on the command line
THEIRS = {1: "urn:gd:prov:loa:basic", 3: "https://prov.example/loa?level=3", 4: "prov-4"}


def again(browser: FlaskClient, rp: Any, flow: Flow, scope: str = SCOPE, **extra: Any) -> Any:
    """Another authorization request in the same (signed-in) browser."""
    return follow_to_page(browser, rp.start(browser, flow, scope, **extra))


def province(app: Flask) -> Any:
    return make_rp(app, "province", level_map=THEIRS)


def test_the_province_gets_its_acr_and_assurance_level(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # level 3
    rp = province(app)
    flow = Flow()
    sign_in(client)
    # its value for our level 3
    page = again(client, rp, flow, "openid realname offline_access", acr_values=THEIRS[3])
    assert page.status_code == 302  # understood and met: no step-up
    tokens = redeem(client, rp, page, flow)
    id_claims = claims_of(app, tokens["id_token"])[1]
    assert id_claims["acr"] == THEIRS[3]
    verification = userinfo(client, tokens["access_token"])["verified_claims"]["verification"]
    assert verification["assurance_level"] == THEIRS[3]
    assert verification["trust_framework"] == "cn_gd_kexin"
    # the access token (for our resource servers, introspection, exchange) keeps ours
    assert claims_of(app, tokens["access_token"])[1]["acr"] == f"{LEVEL}3"
    # a refreshed ID token too
    renewed = refresh(client, rp, tokens["refresh_token"])
    assert renewed.status_code == 200, body(renewed)
    assert claims_of(app, renewed.get_json()["id_token"])[1]["acr"] == THEIRS[3]


def test_verified_claims_in_the_id_token_use_its_vocabulary(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    rp = province(app)
    flow = Flow()
    request = {"id_token": {"verified_claims": {"verification": {}, "claims": {"name": None}}}}
    tokens = redeem(client, rp, start(client, rp, flow, claims=json.dumps(request)), flow)
    released = claims_of(app, tokens["id_token"])[1]["verified_claims"]
    assert released["verification"]["assurance_level"] == THEIRS[3]


def test_its_value_for_a_higher_level_asks_for_our_level(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)  # level 3
    rp = province(app)
    flow = Flow()
    page = start(client, rp, flow, acr_values=THEIRS[4])
    assert page.status_code == 200
    assert "needs real-name level 4" in body(page)  # step-up to our level 4
    assert rid_of(body(page))
    # an essential acr claim in its vocabulary is read the same way
    flow = Flow()
    essential = {"id_token": {"acr": {"essential": True, "values": [THEIRS[4]]}}}
    page = again(client, rp, flow, claims=json.dumps(essential))
    assert page.status_code == 200
    assert "needs real-name level 4" in body(page)


def test_a_sign_in_that_claims_no_level_gets_its_level_1_value(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    rp = province(app)
    flow = Flow()
    tokens = redeem(client, rp, start(client, rp, flow), flow)
    assert claims_of(app, tokens["id_token"])[1]["acr"] == THEIRS[1]
    assert claims_of(app, tokens["access_token"])[1]["acr"] == PWD


def test_an_unmapped_level_and_other_clients_keep_our_values(
    app: Flask, alice: None, client: FlaskClient
) -> None:
    verify(app, "alice", ALICE_NAME, ALICE_ID)
    partial = make_rp(app, "partial", level_map={4: "prov-4"})
    flow = Flow()
    tokens = redeem(client, partial, start(client, partial, flow, acr_values=f"{LEVEL}3"), flow)
    assert claims_of(app, tokens["id_token"])[1]["acr"] == f"{LEVEL}3"
    plain = make_rp(app, "plain")
    flow = Flow()
    page = again(client, plain, flow, acr_values=f"{LEVEL}3")
    tokens = redeem(client, plain, page, flow)
    assert claims_of(app, tokens["id_token"])[1]["acr"] == f"{LEVEL}3"
    assert (
        userinfo(client, tokens["access_token"])["verified_claims"]["verification"][
            "assurance_level"
        ]
        == "3"
    )
    # another client's values mean nothing here
    flow = Flow()
    page = again(client, plain, flow, acr_values=THEIRS[3])
    tokens = redeem(client, plain, page, flow)
    assert claims_of(app, tokens["id_token"])[1]["acr"] == PWD


def test_discovery_is_unchanged(app: Flask, client: FlaskClient) -> None:
    province(app)
    supported = client.get("/.well-known/openid-configuration").get_json()["acr_values_supported"]
    assert not set(THEIRS.values()) & set(supported)
    assert f"{LEVEL}4" in supported


@pytest.mark.parametrize(
    ("level_map", "message"),
    [
        ({0: "x"}, "levels 1 to 5"),
        ({6: "x"}, "levels 1 to 5"),
        ({3: ""}, "one acr value"),
        ({3: "two words"}, "one acr value"),
        ({3: "x" * 201}, "one acr value"),
        ({3: "caf\u00e9"}, "one acr value"),
        ({3: "same", 4: "same"}, "to two levels"),
    ],
)
def test_a_bad_level_map_is_refused(app: Flask, level_map: dict[int, str], message: str) -> None:
    with app.app_context(), pytest.raises(ClientError, match=message):
        make_rp(app, "bad", level_map=level_map)
    province(app)
    with app.app_context():
        with pytest.raises(ClientError, match=message):
            OAuthRuntime.of().clients.update(db(), "province", level_map=level_map)
        db().rollback()
        found = OAuthRuntime.of().clients.find(db(), "province")
        assert found is not None
        assert dict(found.level_map) == THEIRS


def test_the_level_map_on_the_command_line(env: dict[str, str]) -> None:
    assert run(["init"], env).returncode == 0
    base = ["clients", "create", "--client-id", "prov", "--redirect-uri", "https://prov.example/cb"]
    created = run(
        [
            *base,
            "--level-map",
            "3=https://prov.example/loa?level=3",
            "--level-map",
            "4=L4",
            "--json",
        ],
        env,
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["level_map"] == {
        "3": "https://prov.example/loa?level=3",  # split at the first "="
        "4": "L4",
    }
    shown = run(["clients", "show", "prov", "--json"], env)
    assert shown.returncode == 0, shown.stderr
    entry = json.loads(shown.stdout)
    assert entry["level_map"] == {"3": "https://prov.example/loa?level=3", "4": "L4"}
    assert "client_secret" not in entry
    assert not any(str(value).startswith("dgcs_") for value in entry.values())
    assert run(["clients", "show", "nobody", "--json"], env).returncode == 1

    updated = run(["clients", "update", "prov", "--level-map", "5=L5", "--json"], env)
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["level_map"] == {"5": "L5"}  # replaced
    cleared = run(["clients", "update", "prov", "--no-level-map", "--json"], env)
    assert json.loads(cleared.stdout)["level_map"] == {}

    for bad, code in (
        (["--level-map", "L4"], 2),  # no "="
        (["--level-map", "four=L4"], 2),
        (["--level-map", "4="], 2),
        (["--level-map", "4=a", "--level-map", "4=b"], 2),
        (["--level-map", "9=L9"], 1),  # the registry's rule
        (["--level-map", "3=x", "--level-map", "4=x"], 1),
        (["--level-map", "3=x", "--no-level-map"], 1),
    ):
        refused = run(["clients", "update", "prov", *bad], env)
        assert refused.returncode == code, (bad, refused.stdout, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert json.loads(run(["clients", "show", "prov", "--json"], env).stdout)["level_map"] == {}
