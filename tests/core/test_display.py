"""The elderly mode switch (长者模式): a cookie-kept display preference every page
honours, set by a plain link (no JavaScript), never an open redirect."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support import text


def test_pages_start_in_the_standard_mode_with_a_switch(client: FlaskClient) -> None:
    page = text(client.get("/login"))
    assert '<body class="elderly">' not in page
    assert "/display?mode=elderly" in page


def test_the_switch_is_remembered_on_every_page(client: FlaskClient) -> None:
    switched = client.get("/display?mode=elderly&next=/register")
    assert switched.status_code == 303
    assert switched.location == "/register"
    assert "idp_display=elderly" in switched.headers["Set-Cookie"]
    assert "HttpOnly" in switched.headers["Set-Cookie"]
    for path in ("/login", "/register"):
        page = text(client.get(path))
        assert '<body class="elderly">' in page
        assert "/display?mode=standard" in page
    client.get("/display?mode=standard&next=/login")
    assert '<body class="elderly">' not in text(client.get("/login"))


def test_the_switch_is_labelled_in_chinese_by_default(client: FlaskClient) -> None:
    page = text(client.get("/login", headers={"Accept-Language": "zh-CN"}))
    assert "长者模式" in page


def test_a_made_up_mode_or_address_goes_nowhere_harmful(client: FlaskClient) -> None:
    odd = client.get("/display?mode=<script>&next=https://evil.example/")
    assert odd.status_code == 303
    assert not odd.location.startswith("https://evil.example")
    assert "idp_display=standard" in odd.headers["Set-Cookie"]
    client.set_cookie("idp_display", "<b>huge</b>")
    page = text(client.get("/login"))
    assert '<body class="elderly">' not in page
    assert "huge" not in page
