"""The lean path for POST /token, /introspect and /revoke behaves like the rest of the
service: same headers, same answers to bad input, JSON errors, never a stack trace."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from werkzeug.exceptions import BadRequest, ServiceUnavailable, UnsupportedMediaType

from config import Settings
from idp.app import create_app
from idp.core.clock import FrozenClock
from idp.core.db import DatabaseUnavailable
from idp.core.logs import configure_logging
from idp.core.runtime import Runtime
from idp.core.store import Store, StoreUnavailable
from idp.core.web import BODY_LIMITS_KEY
from idp.oauth import lean
from idp.oauth.server import OAuthRuntime
from tests.oauth_support import RP, register
from tests.support import replace_settings


@pytest.fixture
def rp(app: Flask) -> RP:
    _, secret = register(
        app, "machine", grant_types=["client_credentials"], scope="api.read", redirect_uris=[]
    )
    return RP(app, "machine", secret)


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_headers_and_request_ids(client: FlaskClient, rp: RP, path: str) -> None:
    response = client.post(
        path,
        data={"grant_type": "client_credentials", "token": "x"},
        headers={**rp.basic(), "X-Request-Id": "trace-42"},
    )
    assert response.status_code in (200, 400)
    assert response.headers["X-Request-Id"] == "trace-42"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"]


def test_bad_input_gets_json_errors(client: FlaskClient, rp: RP) -> None:
    bad_utf8 = client.post(
        "/token",
        data=b"grant_type=client_credentials&scope=%FF",
        content_type="application/x-www-form-urlencoded",
        headers=rp.basic(),
    )
    assert bad_utf8.status_code == 400
    assert bad_utf8.get_json()["error"] == "invalid_request"
    too_many = client.post(
        "/introspect",
        data="&".join(f"f{i}=1" for i in range(200)),
        content_type="application/x-www-form-urlencoded",
        headers=rp.basic(),
    )
    assert too_many.status_code == 400
    too_big = client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "x" * 100_000},
        headers=rp.basic(),
    )
    assert too_big.status_code == 413
    assert too_big.get_json()["error"] == "invalid_request"
    wrong_method = client.get("/introspect")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"] == "invalid_request"


def test_an_unexpected_failure_is_a_json_500(
    app: Flask, client: FlaskClient, rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(OAuthRuntime.of(app).server, "create_token_response", explode)
    response = client.post("/token", data={"grant_type": "client_credentials"}, headers=rp.basic())
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "server_error",
        "error_description": "An unexpected error occurred.",
    }
    assert "internal detail" not in response.get_data(as_text=True)


def test_a_store_outage_is_answered_from_the_database(
    app: Flask, client: FlaskClient, rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    revoked = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    assert rp.post(client, "/revoke", {"token": revoked["access_token"]}).status_code == 200

    def down(*_args: object) -> int:
        raise StoreUnavailable("cannot reach the store at redis://cache:6379/0")

    with app.app_context():
        provider = OAuthRuntime.of()
        monkeypatch.setattr(provider.revocations._store, "get_many", down)
        monkeypatch.setattr(provider.revocations._store, "get", down)
    answer = rp.post(client, "/introspect", {"token": live["access_token"]})
    assert answer.status_code == 200
    assert answer.get_json()["active"] is True
    answer = rp.post(client, "/introspect", {"token": revoked["access_token"]})
    assert answer.get_json() == {"active": False}

    # with the database gone too, nobody can tell: 503, never "active"
    def no_database(*_args: object) -> None:
        raise DatabaseUnavailable("cannot reach the database")

    monkeypatch.setattr(provider.revocations, "_revoked_in_database", no_database)
    for token in (live, revoked):
        response = rp.post(client, "/introspect", {"token": token["access_token"]})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"  # like every other 503
        assert response.get_json()["error"] == "temporarily_unavailable"


def test_the_introspection_fast_path_answers_like_authlib(
    app: Flask, client: FlaskClient, rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    cases = [
        {"token": token["access_token"]},
        {"token": token["access_token"], "token_type_hint": "access_token"},
        {"token": token["access_token"][:-3] + "AAA"},
        {"token": "not-a-token"},
    ]
    server = OAuthRuntime.of(app).server
    authlib_endpoint = server.create_endpoint_response

    def not_here(*_args: object) -> None:
        raise AssertionError("the fast path should have answered")

    monkeypatch.setattr(server, "create_endpoint_response", not_here)
    fast = [rp.post(client, "/introspect", data).get_json() for data in cases]
    monkeypatch.setattr(server, "create_endpoint_response", authlib_endpoint)
    monkeypatch.setattr(lean.LeanEndpoints, "_introspect_common_case", lambda *_args: None)
    slow = [rp.post(client, "/introspect", data).get_json() for data in cases]
    assert fast == slow
    assert fast[0]["active"] is True
    assert fast[2] == {"active": False}


def test_the_introspection_fast_path_refuses_what_authlib_refuses(
    app: Flask, client: FlaskClient, rp: RP
) -> None:
    """From the attacker's side: everything the fast path does not accept is answered by
    Authlib's endpoint, with the same refusals as before the fast path existed."""
    _, post_secret = register(
        app,
        "poster",
        grant_types=["client_credentials"],
        scope="api.read",
        redirect_uris=[],
        token_endpoint_auth_method="client_secret_post",
    )
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    access = token["access_token"]

    def basic(client_id: str, secret: str) -> dict[str, str]:
        raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    # a wrong secret, an unknown client, and a client registered for another method
    for headers in (
        basic("machine", "dgcs_wrong"),
        basic("nobody", "dgcs_wrong"),
        basic("poster", str(post_secret)),
    ):
        refused = client.post("/introspect", data={"token": access}, headers=headers)
        assert refused.status_code == 401
        assert refused.get_json()["error"] == "invalid_client"
        assert "active" not in refused.get_json()

    # a repeated field is not read as either value
    repeated = client.post(
        "/introspect",
        data=f"token={access}&token=other",
        headers={**rp.basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400
    assert repeated.get_json()["error"] == "invalid_request"
    # RFC 8707 resource indicators may repeat (and are ignored)
    resources = client.post(
        "/introspect",
        data=f"token={access}&resource=https://a.example&resource=https://b.example",
        headers={**rp.basic(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resources.get_json()["active"] is True

    # a revoked token is inactive on the fast path too
    assert rp.post(client, "/introspect", {"token": access}).get_json()["active"] is True
    assert rp.post(client, "/revoke", {"token": access}).status_code == 200
    assert rp.post(client, "/introspect", {"token": access}).get_json() == {"active": False}


# -- the Flask rules of these paths have no views


def test_the_flask_rules_of_the_lean_paths_have_no_views(app: Flask, client: FlaskClient) -> None:
    """POST to these paths never reaches Flask, so Flask has no view for them; the
    rules stay for the other methods, url_for and discovery."""
    rules = {rule.rule: rule for rule in app.url_map.iter_rules() if rule.rule in lean.ROUTES}
    assert set(rules) == set(lean.ROUTES)
    for path, (endpoint, _handler) in lean.ROUTES.items():
        assert rules[path].endpoint == endpoint
        assert rules[path].methods == {"POST", "OPTIONS"}
        assert endpoint not in app.view_functions
    views = {rule.endpoint for rule in app.url_map.iter_rules()} - set(app.view_functions)
    assert views == {endpoint for endpoint, _handler in lean.ROUTES.values()}
    with app.test_request_context():
        assert url_for("oauth.token", _external=True) == "http://localhost/token"
        assert url_for("oauth.introspect") == "/introspect"
        assert url_for("oauth.revoke") == "/revoke"
    discovery = client.get("/.well-known/openid-configuration").get_json()
    assert discovery["token_endpoint"] == "http://localhost/token"
    assert discovery["introspection_endpoint"] == "http://localhost/introspect"
    assert discovery["revocation_endpoint"] == "http://localhost/revoke"
    options = client.options("/token")
    assert options.status_code == 200
    assert set(options.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    for method in ("GET", "PUT", "DELETE"):
        refused = client.open("/revoke", method=method)
        assert refused.status_code == 405
        assert refused.get_json()["error"] == "invalid_request"


def test_a_lower_case_post_is_answered_by_the_lean_layer(client: FlaskClient, rp: RP) -> None:
    """Werkzeug upper-cases the method: a "post" once reached Flask's view."""
    response = client.open(
        "/token",
        method="post",
        data={"grant_type": "client_credentials"},
        headers=rp.basic(),
    )
    assert response.status_code == 200
    assert response.get_json()["token_type"] == "Bearer"


# -- the lean layer applies every cross-cutting hook of the Flask app

# What the Flask app does around a request at these paths (hooks of the app and of the
# blueprint of these rules, app-context teardown, error handlers, WSGI middleware, the
# request class), and where the lean layer does the same: the test of this module that
# shows it, or why it needs nothing. A hook added to the app without an entry here
# fails test_every_cross_cutting_hook_of_the_flask_app_has_a_lean_counterpart.
NOT_NEEDED = "not needed: "
COUNTERPARTS: dict[str, str] = {
    # before_request
    "hook idp.core.sessions.refuse_without_store": NOT_NEEDED + "the lean layer opens no session",
    "hook idp.core.web.init_app.<locals>.begin": "test_request_ids_in_headers_and_logs",
    "hook idp.core.web._guard_input": "test_bad_input_gets_json_errors",
    "hook flask_wtf.csrf.CSRFProtect.init_app.<locals>.csrf_protect": NOT_NEEDED
    + "the oauth blueprint is exempt from CSRF (clients authenticate themselves)",
    "hook idp.core.metrics._start_timer": "test_metrics",
    # after_request
    "hook idp.core.web._security_headers": "test_headers_and_request_ids",
    "hook idp.core.metrics._observe": "test_metrics",
    "hook accounts.records.api._api_shape": NOT_NEEDED
    + "it reshapes errors under /api/v1/ only, a path the lean layer does not serve",
    # app context
    "hook idp.core.runtime.close_db": "test_the_app_context_is_torn_down",
    # error handlers
    "error flask_wtf.csrf.CSRFError": NOT_NEEDED + "no CSRF check (above)",
    "error werkzeug.exceptions.HTTPException": "test_http_errors_are_json",
    "error idp.core.store.StoreUnavailable": "test_a_store_outage_is_answered_from_the_database",
    "error idp.core.db.DatabaseUnavailable": "test_a_store_outage_is_answered_from_the_database",
    "error builtins.Exception": "test_an_unexpected_failure_is_a_json_500",
    # the WSGI stack, outside in, and the request
    "wsgi werkzeug.middleware.proxy_fix.ProxyFix": "test_behind_a_trusted_proxy",
    "wsgi idp.oauth.lean.LeanEndpoints": NOT_NEEDED + "the lean layer itself",
    "request class idp.core.web.IdpRequest": "test_the_request_is_the_app_s_request_class",
}


def _name(value: Any) -> str:
    return f"{value.__module__}.{value.__qualname__}"


def cross_cutting(app: Flask) -> list[str]:
    """Everything the Flask app would run around a request to the lean paths."""
    scopes: set[str | None] = {None}
    scopes.update(
        rule.endpoint.rpartition(".")[0]
        for rule in app.url_map.iter_rules()
        if rule.rule in lean.ROUTES
    )
    found: list[str] = []
    registries = (
        app.before_request_funcs,
        app.after_request_funcs,
        app.teardown_request_funcs,
        app.url_value_preprocessors,
        app.url_default_functions,
    )
    for registry in registries:
        for scope in scopes:
            found += [f"hook {_name(hook)}" for hook in registry.get(scope, [])]
    found += [f"hook {_name(hook)}" for hook in app.teardown_appcontext_funcs]
    for scope in scopes:
        for handlers in app.error_handler_spec.get(scope, {}).values():
            found += [f"error {_name(exception)}" for exception in handlers]
    layer: Any = app.wsgi_app
    while not (getattr(layer, "__self__", None) is app and layer.__name__ == "wsgi_app"):
        found.append(f"wsgi {_name(type(layer))}")
        inner = getattr(layer, "app", None) or getattr(layer, "_downstream", None)
        assert inner is not None, f"cannot see inside the WSGI middleware {type(layer)}"
        layer = inner
    found.append(f"request class {_name(app.request_class)}")
    return found


@pytest.fixture
def proxied(settings: Settings, store: Store, clock: FrozenClock) -> Iterator[Flask]:
    """The app behind one trusted proxy (the WSGI stack with every layer)."""
    application = create_app(
        replace_settings(settings, trusted_proxy_count=1), store=store, clock=clock
    )
    yield application
    Runtime.of(application).database.dispose()


def test_every_cross_cutting_hook_of_the_flask_app_has_a_lean_counterpart(
    proxied: Flask,
) -> None:
    found = cross_cutting(proxied)
    missing = [name for name in found if name not in COUNTERPARTS]
    assert missing == [], (
        f"mirror these in idp/oauth/lean.py and add them to COUNTERPARTS: {missing}"
    )
    assert set(found) == set(COUNTERPARTS), "COUNTERPARTS lists what the app no longer has"
    tests = {value for value in COUNTERPARTS.values() if not value.startswith(NOT_NEEDED)}
    assert [name for name in tests if not callable(globals().get(name))] == []
    # the proxy is outside the lean layer (which sees the forwarded scheme and
    # address), and the lean layer directly in front of Flask
    stack = [name for name in found if name.startswith("wsgi ")]
    assert stack == [
        "wsgi werkzeug.middleware.proxy_fix.ProxyFix",
        "wsgi idp.oauth.lean.LeanEndpoints",
    ]
    # no endpoint of the lean layer takes a larger body than the app's limit
    assert not set(proxied.config[BODY_LIMITS_KEY]) & {e for e, _h in lean.ROUTES.values()}


def test_request_ids_in_headers_and_logs(
    app: Flask,
    client: FlaskClient,
    rp: RP,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = rp.token_request(client, {"grant_type": "client_credentials"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-Id"])
    insane = client.post(
        "/revoke", data={"token": "x"}, headers={**rp.basic(), "X-Request-Id": "a b;c"}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", insane.headers["X-Request-Id"])
    access_token = made.get_json()["access_token"]

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("internal detail")

    configure_logging("INFO", "json")
    try:
        # Authlib's path, and the introspection fast path
        client.post("/revoke", data={"token": "x"}, headers={**rp.basic(), "X-Request-Id": "r-1"})
        rp.post(client, "/introspect", {"token": access_token})
        client.post(
            "/introspect",
            data={"token": access_token},
            headers={**rp.basic(), "X-Request-Id": "i-1"},
        )
        monkeypatch.setattr(OAuthRuntime.of(app).server, "create_token_response", explode)
        client.post(
            "/token",
            data={"grant_type": "client_credentials"},
            headers={**rp.basic(), "X-Request-Id": "t-1"},
        )
    finally:
        configure_logging("WARNING", "text")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    access = [
        (line["path"], line["status"], line.get("request_id"))
        for line in lines
        if line.get("logger") == "idp.access"
    ]
    assert access[0] == ("/revoke", 200, "r-1")
    assert access[1][:2] == ("/introspect", 200)
    assert re.fullmatch(r"[0-9a-f]{32}", str(access[1][2]))  # made, as the header says
    assert access[2:] == [("/introspect", 200, "i-1"), ("/token", 500, "t-1")]
    # a line logged while answering carries the request's id too
    errors = [line for line in lines if line.get("message") == "unhandled error"]
    assert [line["request_id"] for line in errors] == ["t-1"]


def test_metrics(client: FlaskClient, rp: RP) -> None:
    def count(endpoint: str, status: str) -> float:
        labels = {"endpoint": endpoint, "method": "POST", "status": status}
        return REGISTRY.get_sample_value("idp_request_duration_seconds_count", labels) or 0.0

    before = {path: count(endpoint, "200") for path, (endpoint, _h) in lean.ROUTES.items()}
    refused_before = count("oauth.token", "400")
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    for path in ("/introspect", "/revoke"):
        assert rp.post(client, path, {"token": token["access_token"]}).status_code == 200
    rp.token_request(client, {"grant_type": "nonsense"})
    for path, (endpoint, _h) in lean.ROUTES.items():
        assert count(endpoint, "200") == before[path] + 1, path
    assert count("oauth.token", "400") == refused_before + 1


def test_the_app_context_is_torn_down(app: Flask, client: FlaskClient, rp: RP) -> None:
    """The lean layer answers inside an app context: its teardown (closing the
    request's database session, ``close_db``) runs after every answer."""
    torn_down: list[BaseException | None] = []
    app.teardown_appcontext(torn_down.append)
    token = rp.token_request(client, {"grant_type": "client_credentials"}).get_json()
    assert rp.post(client, "/revoke", {"token": token["access_token"]}).status_code == 200
    assert torn_down == [None, None]


def test_http_errors_are_json(
    app: Flask, client: FlaskClient, rp: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Flask's handler of HTTP errors answers them (JSON at these endpoints)."""
    server = OAuthRuntime.of(app).server
    for raised, status, error in (
        (BadRequest(), 400, "invalid_request"),
        (UnsupportedMediaType(), 415, "invalid_request"),
        (ServiceUnavailable(), 503, "server_error"),
    ):

        def fail(*_args: object, exc: Exception = raised, **_kwargs: object) -> None:
            raise exc

        monkeypatch.setattr(server, "create_token_response", fail)
        response = rp.token_request(client, {"grant_type": "client_credentials"})
        assert response.status_code == status
        assert response.get_json()["error"] == error
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_behind_a_trusted_proxy(proxied: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    _, secret = register(
        proxied, "machine", grant_types=["client_credentials"], scope="api.read", redirect_uris=[]
    )
    rp = RP(proxied, "machine", secret)
    client = proxied.test_client()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    configure_logging("INFO", "json")
    try:
        response = client.post(
            "/token", data={"grant_type": "client_credentials"}, headers={**rp.basic(), **forwarded}
        )
        plain = client.post("/token", data={"grant_type": "client_credentials"}, headers=rp.basic())
    finally:
        configure_logging("WARNING", "text")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in plain.headers
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    addresses = [line["client_ip"] for line in lines if line.get("logger") == "idp.access"]
    assert addresses == ["203.0.113.9", "127.0.0.1"]


def test_the_request_is_the_app_s_request_class(app: Flask, client: FlaskClient, rp: RP) -> None:
    made: list[str] = []

    class Recording(app.request_class):  # type: ignore[name-defined,misc]
        def __init__(self, environ: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            made.append(environ["PATH_INFO"])
            super().__init__(environ, *args, **kwargs)

    app.request_class = Recording
    assert rp.token_request(client, {"grant_type": "client_credentials"}).status_code == 200
    assert made == ["/token"]
