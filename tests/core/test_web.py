"""Operations endpoints and the handling of bad input."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from idp.app import create_app
from idp.core.clock import FrozenClock
from idp.core.runtime import Runtime
from idp.core.store import Store
from tests.support import create_user, csrf_token, replace_settings, sign_in
from tests.support import text as body


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "store": "ok"}


def test_a_store_outage_during_requests_is_a_503_not_a_500(app: Flask) -> None:
    class Broken:
        shared = True

        def __getattr__(self, name: str) -> object:
            from idp.core.store import StoreUnavailable

            def fail(*_args: object, **_kwargs: object) -> None:
                raise StoreUnavailable("cannot reach the store at redis://cache:6379/0")

            return fail

    Runtime.of(app).store = Broken()  # type: ignore[assignment]
    app.session_interface.store = Broken()  # type: ignore[attr-defined]
    client = app.test_client()
    client.set_cookie("idp_session", "A" * 43)
    response = client.get("/login")
    assert response.status_code == 503
    assert "Traceback" not in body(response)
    ready = client.get("/readyz")
    assert ready.status_code == 503


def test_unknown_pages_get_a_page_or_json(client: FlaskClient) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert "<html" in body(page)
    api = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert api.status_code == 404
    assert api.get_json()["error"] == "not_found"


def test_invalid_utf8_is_refused_clearly(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    token = csrf_token(body(client.get("/login")))
    response = client.post(
        "/login",
        data=b"csrf_token=" + token.encode() + b"&username=al%FFice&password=x%C3",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "UTF-8" in body(response)
    assert client.get("/login?next=%FF").status_code == 400


def test_oversized_requests_are_refused(app: Flask, client: FlaskClient) -> None:
    token = csrf_token(body(client.get("/login")))
    response = client.post(
        "/login", data={"csrf_token": token, "username": "a" * 100_000, "password": "x"}
    )
    assert response.status_code == 413
    too_long = client.post(
        "/login", data={"csrf_token": token, "username": "a" * 5000, "password": "x"}
    )
    assert too_long.status_code == 400


def test_too_many_fields_are_refused(client: FlaskClient) -> None:
    data = "&".join(f"f{i}=1" for i in range(200))
    response = client.post("/login", data=data, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400


def test_an_unexpected_error_is_a_plain_500_page(app: Flask) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    client = app.test_client()
    response = client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in body(response)
    assert "Traceback" not in body(response)
    api = client.get("/boom", headers={"Accept": "application/json"})
    assert api.get_json()["error"] == "server_error"


def test_request_ids_are_echoed_or_made(client: FlaskClient) -> None:
    given = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert made.headers["X-Request-Id"] != "bad id with spaces"
    assert len(made.headers["X-Request-Id"]) == 32


def test_metrics_are_off_unless_a_token_is_set(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_metrics_need_the_token(settings: Settings, store: Store, clock: FrozenClock) -> None:
    app = create_app(replace_settings(settings, metrics_token="m" * 32), store=store, clock=clock)
    create_user(app)
    client = app.test_client()
    sign_in(client)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
    assert scraped.status_code == 200
    text = body(scraped)
    assert 'idp_signins_total{outcome="success",step="complete"}' in text
    assert "idp_request_duration_seconds_bucket" in text
    Runtime.of(app).database.dispose()


def test_logs_are_json_with_the_request_id(app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    from idp.core.logs import configure_logging

    configure_logging("INFO", "json")
    try:
        app.test_client().get("/healthz", headers={"X-Request-Id": "trace-me"})
    finally:
        configure_logging("WARNING", "text")
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    access = [line for line in lines if line.get("logger") == "idp.access"]
    assert access
    assert access[-1]["request_id"] == "trace-me"
    assert access[-1]["path"] == "/healthz"
    assert access[-1]["status"] == 200
    logging.getLogger().handlers  # noqa: B018 - handlers stay configured for later tests


def test_a_form_from_an_ended_session_leads_back_to_sign_in_with_a_message(
    app: Flask, clock: FrozenClock, settings: Settings
) -> None:
    """Issue 14's bad input: an expired session's form is not a dead end (nor a 500)."""
    create_user(app, "alice")
    client = app.test_client()
    sign_in(client, "alice")
    page = client.get("/account/sessions")
    token = csrf_token(body(page))
    clock.advance(settings.session_idle_timeout + 120)  # the session ends meanwhile
    answer = client.post(
        "/account/sessions/end-all",
        data={"csrf_token": token},
        headers={"Referer": "http://localhost/account/sessions"},
    )
    assert answer.status_code == 303
    assert answer.location == "/login?next=/account/sessions"
    login = client.get(answer.location)
    assert "Your session has expired. Please sign in again." in body(login)
    # a Referer of another site is not followed afterwards
    again = app.test_client()
    sign_in(again, "alice")
    token = csrf_token(body(again.get("/account/sessions")))
    clock.advance(settings.session_idle_timeout + 120)
    other = again.post(
        "/account/sessions/end-all",
        data={"csrf_token": token},
        headers={"Referer": "https://evil.example/account/sessions"},
    )
    assert other.location == "/login?next=/account"


def test_a_forged_form_in_a_live_session_gets_the_form_expired_page(app: Flask) -> None:
    create_user(app, "alice")
    client = app.test_client()
    sign_in(client, "alice")
    answer = client.post("/account/sessions/end-all", data={"csrf_token": "forged"})
    assert answer.status_code == 400
    assert "This form has expired" in body(answer)
    assert client.get("/account").status_code == 200  # nothing was done
