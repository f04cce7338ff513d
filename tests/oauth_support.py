"""A relying party for tests: runs the authorization code flow (PKCE S256) through the
Flask test client, like a browser and a client back end would."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from idp.core.runtime import db
from idp.oauth.clients import ClientInfo, Registration
from idp.oauth.server import OAuthRuntime
from tests.support import STRONG_PASSWORD, csrf_token
from tests.support import text as body

REDIRECT = "https://rp.example.gov.cn/callback"


def register(app: Flask, client_id: str = "rp", **values: Any) -> tuple[ClientInfo, str | None]:
    values.setdefault("redirect_uris", [REDIRECT])
    with app.app_context():
        return OAuthRuntime.of().clients.create(db(), Registration(client_id=client_id, **values))


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Flow:
    """One authorization request's secrets, as an RP keeps them."""

    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    verifier: str = ""
    challenge: str = ""

    def __post_init__(self) -> None:
        self.verifier, self.challenge = pkce_pair()


@dataclass
class RP:
    app: Flask
    client_id: str = "rp"
    secret: str | None = None
    redirect_uri: str = REDIRECT

    def authorize_params(
        self, flow: Flow, scope: str = "openid profile", **extra: str
    ) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
        }
        params.update(extra)
        return {k: v for k, v in params.items() if v is not None}

    def start(
        self, browser: FlaskClient, flow: Flow, scope: str = "openid profile", **extra: Any
    ) -> TestResponse:
        return browser.get("/authorize?" + urlencode(self.authorize_params(flow, scope, **extra)))

    def sign_in_and_get_code(
        self,
        browser: FlaskClient,
        flow: Flow,
        *,
        username: str = "alice",
        password: str = STRONG_PASSWORD,
        scope: str = "openid profile",
        approve: bool = True,
        **extra: Any,
    ) -> dict[str, str]:
        """Drive the browser through sign-in and consent; returns the callback params."""
        response = self.start(browser, flow, scope, **extra)
        for _ in range(6):
            if response.status_code != 302:
                break
            location = response.headers["Location"]
            if location.startswith(self.redirect_uri):
                return query_of(location)
            if location.startswith("/login"):
                page = browser.get(location)
                response = browser.post(
                    "/login",
                    data={
                        "csrf_token": csrf_token(body(page)),
                        "username": username,
                        "password": password,
                        **_hidden_fields(body(page)),
                    },
                )
                continue
            response = browser.get(location)
        if response.status_code == 200 and 'name="consent"' in body(response):
            html = body(response)
            response = browser.post(
                "/authorize/consent",
                data={
                    "csrf_token": csrf_token(html),
                    "rid": _field(html, "rid"),
                    "consent": "approve" if approve else "deny",
                },
            )
            assert response.status_code == 302, body(response)
            return query_of(response.headers["Location"])
        raise AssertionError(
            f"the flow did not reach the client: {response.status_code} "
            f"{response.headers.get('Location')} {body(response)[:500]}"
        )

    def token_request(
        self, client: FlaskClient, data: dict[str, str], *, auth: str = "basic"
    ) -> TestResponse:
        headers = {}
        form = dict(data)
        if auth == "basic" and self.secret:
            raw = f"{self.client_id}:{self.secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif auth == "post" and self.secret:
            form.update(client_id=self.client_id, client_secret=self.secret)
        elif auth == "none":
            form["client_id"] = self.client_id
        return client.post("/token", data=form, headers=headers)

    def redeem(self, client: FlaskClient, code: str, flow: Flow, **kwargs: Any) -> TestResponse:
        return self.token_request(
            client,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": flow.verifier,
            },
            **kwargs,
        )

    def tokens(self, browser: FlaskClient, **kwargs: Any) -> tuple[dict[str, Any], Flow]:
        flow = Flow()
        callback = self.sign_in_and_get_code(browser, flow, **kwargs)
        assert callback.get("state") == flow.state, callback
        response = self.redeem(browser, callback["code"], flow)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json(), flow

    def post(self, client: FlaskClient, path: str, data: dict[str, str]) -> TestResponse:
        """POST to an endpoint with this client's HTTP Basic credentials."""
        return client.post(path, data=data, headers=self.basic())

    def basic(self) -> dict[str, str]:
        raw = f"{self.client_id}:{self.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field"
    return match.group(1)


def _hidden_fields(html: str) -> dict[str, str]:
    fields = dict(
        re.findall(r'<input type="hidden" name="(next|reauth|client_id)" value="([^"]*)"', html)
    )
    return {k: v.replace("&amp;", "&") for k, v in fields.items()}
