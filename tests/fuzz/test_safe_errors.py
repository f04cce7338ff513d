"""Error descriptions are safe (RFC 6749 5.2 character set) whatever the input: a
library that echoes a parameter into ``error_description`` must not turn bad input into
a 500 (issue 9: ``response_type=登`` did), and the input is never sent back raw."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from idp.core.error_text import MAX_DESCRIPTION, safe_description
from tests.oauth_support import REDIRECT, RP, pkce_pair, query_of, register

# RFC 6749 5.2: error_description is %x20-21 / %x23-5B / %x5D-7E
SAFE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")
# (a NUL is refused before the protocol: test_regressions.py)
HOSTILE = ["登", "😀", "\u202eevil", "a\x01\x7fb", '"quoted"\\', "é" * 300]


@pytest.fixture
def rp(app: Flask) -> RP:
    _, secret = register(app, "rp")
    return RP(app, "rp", secret)


def _params(**changes: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": "rp",
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "st-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return params


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_response_type_is_redirected_as_unsupported(
    client: FlaskClient, rp: RP, value: str
) -> None:
    response = client.get("/authorize", query_string=_params(response_type=value))
    assert response.status_code == 302
    assert response.location.startswith(REDIRECT + "?")
    query = query_of(response.location)
    assert query["error"] == "unsupported_response_type"
    assert query["state"] == "st-1"
    assert SAFE.match(query["error_description"]), query["error_description"]
    assert value not in query["error_description"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_redirect_uri_gets_an_error_page(client: FlaskClient, rp: RP, value: str) -> None:
    response = client.get("/authorize", query_string=_params(redirect_uri=REDIRECT + value))
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    page = response.get_data(as_text=True)
    assert "invalid_request" in page or "invalid sign-in request" in page
    assert "Traceback" not in page


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_response_type_without_a_client_gets_an_error_page(
    client: FlaskClient, value: str
) -> None:
    response = client.get("/authorize", query_string={"response_type": value, "client_id": "x"})
    assert response.status_code == 400
    assert value not in response.get_data(as_text=True)


def test_json_errors_at_the_token_endpoint_are_safe(client: FlaskClient, rp: RP) -> None:
    response = client.post(
        "/token",
        data={"grant_type": "登", "client_id": "rp", "client_secret": rp.secret or ""},
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "unsupported_grant_type"
    assert SAFE.match(body.get("error_description", ""))


@pytest.mark.parametrize("name", ["登", "😀", '"x"'])
def test_a_repeated_parameter_is_named_safely(client: FlaskClient, rp: RP, name: str) -> None:
    response = client.post(
        "/token",
        data=MultiDict([("grant_type", "client_credentials"), (name, "1"), (name, "2")]),
        headers=rp.basic(),
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert SAFE.match(body["error_description"]), body["error_description"]


def test_a_translated_json_error_keeps_to_the_character_set(client: FlaskClient) -> None:
    response = client.get("/token", headers={"Accept-Language": "zh-CN"})
    assert response.status_code == 405
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert body["error_description"] == "Method Not Allowed."


def test_safe_description_replaces_and_bounds() -> None:
    assert safe_description("plain 'text' [ok]") == "plain 'text' [ok]"
    assert safe_description("type '登录' x") == "type '?' x"
    assert safe_description('a"b\\c\x00d\ne') == "a?b?c?d?e"
    long = safe_description("x" * 1000)
    assert len(long) == MAX_DESCRIPTION
    assert long.endswith("...")
    assert safe_description("中文", fallback="Bad Request.") == "Bad Request."


def test_every_oauth_error_is_built_with_a_safe_description(app: Flask) -> None:
    # the provider (built with the app) has wrapped Authlib's constructor, which
    # would otherwise raise ValueError for this description
    from authlib.oauth2.rfc6749.errors import InvalidRequestError, UnsupportedResponseTypeError
    from authlib.oidc.core.errors import LoginRequiredError

    assert InvalidRequestError("bad '登'").description == "bad '?'"
    assert LoginRequiredError(description="x\x00y").description == "x?y"
    # built as Authlib 1.9 builds it (its second argument becomes the description)
    unsupported = UnsupportedResponseTypeError("type '😀'", "😀 x", redirect_uri=REDIRECT)
    assert unsupported.description == "? x"
    assert unsupported.redirect_uri == REDIRECT
