"""Property-based fuzzing of every endpoint (issue 9, section 2).

Each test takes one family of endpoints (tests/fuzz/endpoints.py) on both storage
back ends, anonymous and signed in, and sends each endpoint hostile requests
(tests/fuzz/strategies.py) straight into the app's WSGI stack, as the server does:
``app`` -> ``app.wsgi_app`` (the lean layer for POST /token, /introspect, /revoke, then
Flask). Every answer must hold the properties of tests/fuzz/properties.py: below 500
(a deliberate 503 aside), no stack trace, JSON errors with a safe description at the
JSON endpoints, an error page or an error redirect to the registered URI at the
authorization endpoint, no redirect off the site. Afterwards the stored data is
intact: the client and the user work, the audit chain verifies.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from werkzeug.datastructures import Headers
from werkzeug.test import run_wsgi_app

from accounts.container import Accounts
from idp.core.runtime import audit_log
from idp.oauth.server import OAuthRuntime
from tests.fuzz.conftest import World
from tests.fuzz.endpoints import TARGETS, Target
from tests.fuzz.properties import Answer, check_answer
from tests.fuzz.strategies import FuzzRequest, requests
from tests.oauth_support import Flow
from tests.support import STRONG_PASSWORD


def send(world: World, request: FuzzRequest) -> Answer:
    app_iter, status, headers = run_wsgi_app(
        world.app, request.environ(world.session_cookie), buffered=True
    )
    body = b"".join(app_iter)
    code = int(status.split(" ", 1)[0])
    world.counter.count(code)
    return Answer(code, Headers(headers), body)


def fuzz(world: World, target: Target) -> None:
    strategy = requests(
        target.url,
        target.methods,
        target.names,
        world.known,
        path_suffixes=target.path_suffixes,
    )

    @given(strategy)
    def one_request(request: FuzzRequest) -> None:
        answer = send(world, request)
        check_answer(target, request, answer, issuer=world.issuer, redirect_uri=world.redirect_uri)

    one_request()


def check_intact(world: World) -> None:
    """Bad input corrupted nothing: the client and the user still work, the audit
    chain verifies."""
    app = world.app
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("alice")
        assert user is not None
        assert Accounts.of().account_service().confirm_password(user, STRONG_PASSWORD)
        client = OAuthRuntime.of().clients.get("rp")
        assert client is not None
        assert client.check_client_secret(world.rp.secret or "")
        report = audit_log().verify()
        assert report.ok, report
    browser = app.test_client()
    # a fresh sign-in and code flow through the fuzzed app
    callback = world.rp.sign_in_and_get_code(browser, Flow())
    assert "code" in callback, callback


@pytest.mark.parametrize("family", list(TARGETS))
def test_no_input_breaks_an_endpoint(world: World, family: str) -> None:
    for target in TARGETS[family]:
        fuzz(world, target)
    check_intact(world)
