"""Hypothesis profiles and the fuzzed world (an app with a client, a user, a session).

Profiles (``IDP_FUZZ_PROFILE``):

* ``ci`` (default): a few examples per endpoint, derandomized (the same examples on
  every run, so CI is reproducible), no example database.
* ``campaign``: a long run by hand, ``IDP_FUZZ_EXAMPLES`` examples per endpoint and
  state (default 1000), random (a new seed each run), failures kept in
  ``.hypothesis/`` (ignored by git) so that a rerun tries them first.
  docs/testing.md ("Fuzzing") has the command.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from idp.oauth.lean import LeanEndpoints
from tests.fuzz.strategies import Known
from tests.oauth_support import REDIRECT, RP, Flow, register
from tests.support import create_user, csrf_token, sign_in
from tests.support import text as body

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("IDP_FUZZ_EXAMPLES", "6")),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "campaign",
    max_examples=int(os.environ.get("IDP_FUZZ_EXAMPLES", "1000")),
    deadline=None,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(Path(__file__).parents[2] / ".hypothesis" / "fuzz"),
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.load_profile(os.environ.get("IDP_FUZZ_PROFILE", "ci"))


@dataclass
class Counter:
    """Requests sent by one test, by status (reported as the test's user properties,
    which pytest-xdist carries back to the main process)."""

    by_status: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    totals: dict[int, int] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "fuzz_answers":
                    for status, count in value.items():
                        totals[int(status)] = totals.get(int(status), 0) + count
    if totals:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(totals.items()))
        terminalreporter.write_line(
            f"fuzz: {sum(totals.values())} requests ({settings().max_examples} examples per "
            f"endpoint and state); answers by status: {statuses}"
        )


@dataclass
class World:
    """One app as the fuzz finds it: a confidential client, a user with tokens, and
    the cookie of a session (anonymous or signed in) with its CSRF token."""

    app: Flask
    rp: RP
    known: Known
    session_cookie: str
    counter: Counter = field(default_factory=Counter)
    issuer: str = "http://localhost"
    redirect_uri: str = REDIRECT


_COOKIE = re.compile(r"^(idp_session|__Host-idp_session)=([^;]*)")


def _session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("idp_session")
    return f"idp_session={cookie.value}" if cookie else ""


def _pending_rid(browser: FlaskClient, rp: RP) -> str:
    """A pending authorization request (the user is sent to sign in)."""
    response = rp.start(browser, Flow())
    location = response.headers.get("Location", "")
    match = re.search(r"rid%3D([^&]+)", location)
    assert match, location
    return match.group(1)


def _templates(
    flow: Flow, tokens: dict[str, Any], csrf: str, rid: str, secret: str
) -> tuple[tuple[str, tuple[tuple[tuple[str, str], ...], ...]], ...]:
    """Valid requests for the endpoints whose interesting code lies behind the checks."""
    authorize = (
        ("response_type", "code"),
        ("client_id", "rp"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", flow.challenge),
        ("code_challenge_method", "S256"),
    )
    client = (("client_id", "rp"), ("client_secret", secret))
    refresh = (("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"]))
    code = (
        ("grant_type", "authorization_code"),
        ("code", "not-a-code"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", flow.verifier),
    )
    token = (("token", tokens["access_token"]),)
    form = (("csrf_token", csrf),)
    logout = (
        ("id_token_hint", tokens["id_token"]),
        ("post_logout_redirect_uri", REDIRECT),
        ("state", "st-2"),
        ("client_id", "rp"),
    )
    return (
        ("/authorize", (authorize, (*authorize, ("prompt", "none")))),
        ("/authorize/continue", ((("rid", rid),),)),
        ("/token", ((*refresh, *client), (*code, *client), refresh)),
        ("/introspect", ((*token, *client), token)),
        ("/revoke", ((*token, *client), token)),
        ("/userinfo", ((("access_token", tokens["access_token"]),),)),
        ("/session/end", (logout,)),
        ("/login", ((*form, ("username", "alice"), ("password", "wrong password 1")),)),
        ("/register", ((*form, ("username", "bob"), ("password", "x" * 12)),)),
        *(
            (path, ((*form, ("rid", rid)),))
            for path in ("/authorize/consent", "/authorize/level", "/authorize/account")
        ),
        *(
            (path, (form,))
            for path in (
                "/logout",
                "/account/profile",
                "/account/password",
                "/account/realname",
                "/account/realname/phone",
                "/account/realname/phone/code",
                "/account/realname/face",
                "/account/totp",
                "/account/services/revoke",
                "/staff/counter",
            )
        ),
    )


def build_world(app: Flask, *, signed_in: bool) -> World:
    assert isinstance(app.wsgi_app, LeanEndpoints), "the fuzz must pass the lean layer"
    _, secret = register(app, "rp", scope="openid profile email phone offline_access")
    assert secret is not None
    rp = RP(app, "rp", secret)
    create_user(app, "alice")
    tokens, flow = rp.tokens(app.test_client(), scope="openid profile offline_access")
    browser = app.test_client()
    rid = _pending_rid(browser, rp)
    if signed_in:
        assert sign_in(browser).status_code == 302
        page = browser.get("/account")
    else:
        page = browser.get("/login")
    csrf = csrf_token(body(page))
    known = Known(
        values=(
            "code",
            "openid",
            "openid profile offline_access",
            "S256",
            "plain",
            "none",
            "login",
            "consent",
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "access_token",
            "approve",
            "yes",
            "alice",
            "rp",
            REDIRECT,
            flow.challenge,
            flow.verifier,
            csrf,
            rid,
            tokens["access_token"],
            tokens["refresh_token"],
            tokens["id_token"],
            "/account",
            "3",
            "11010519491231002X",
            "13800138000",
        ),
        templates=_templates(flow, tokens, csrf, rid, secret),
        basic_credentials=(("rp", secret),),
        bearer_tokens=(tokens["access_token"], tokens["id_token"]),
    )
    return World(app, rp, known, _session_cookie(browser))


@pytest.fixture(params=["anonymous", "signed_in"])
def world(app: Flask, request: pytest.FixtureRequest, record_property: Any) -> Iterator[World]:
    made = build_world(app, signed_in=request.param == "signed_in")
    yield made
    record_property("fuzz_answers", dict(made.counter.by_status))
