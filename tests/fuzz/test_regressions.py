"""Focused regressions for what the fuzz found (each failed before its fix)."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask
from werkzeug.test import run_wsgi_app

from tests.fuzz.strategies import FORM, FuzzRequest
from tests.oauth_support import REDIRECT, pkce_pair, query_of, register


def _get(app: Flask, path: bytes, query: bytes, **headers: str) -> tuple[int, bytes]:
    request = FuzzRequest("GET", path, query, {"Accept-Language": "en", **headers}, "", None, b"")
    app_iter, status, _ = run_wsgi_app(app, request.environ(), buffered=True)
    return int(status.split()[0]), b"".join(app_iter)


def test_raw_bytes_that_are_not_utf8_in_the_query_get_a_page(app: Flask) -> None:
    # a server passes the query string on as it came: raw 0xED 0xA0 0x80 (a lone
    # surrogate) made Werkzeug's request.args raise while the error page chose its
    # language (ui_locales)
    for path in (b"/login", b"/healthz", b"/authorize", b"/nowhere"):
        status, body = _get(app, path, b"ui_locales=\xed\xa0\x80&a=\xff")
        assert status == 400, (path, status)
        assert b"not valid UTF-8" in body


def test_too_many_raw_fields_get_a_page(app: Flask) -> None:
    status, body = _get(app, b"/login", b"&".join([b"a=\xff"] * 60))
    assert status == 400
    assert b"too many fields" in body


def test_a_request_id_with_a_newline_is_replaced(app: Flask) -> None:
    # "$" matched before a final newline: "0\n" was echoed into the X-Request-Id
    # response header, and Werkzeug refused to build the response (a crash)
    for path, method in ((b"/healthz", "GET"), (b"/token", "POST"), (b"/login", "PUT")):
        request = FuzzRequest(
            method, path, b"", {"X-Request-Id": "trace-1\n"}, "", FORM, b"grant_type=x"
        )
        app_iter, status, headers = run_wsgi_app(app, request.environ(), buffered=True)
        b"".join(app_iter)
        assert int(status.split()[0]) < 500
        assert "\n" not in headers["X-Request-Id"]
        assert len(headers["X-Request-Id"]) == 32


def test_a_code_challenge_with_a_final_newline_is_refused(app: Flask) -> None:
    register(app, "rp")
    _, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": "rp",
            "redirect_uri": REDIRECT,
            "scope": "openid",
            "state": "s",
            "code_challenge": challenge + "\n",
            "code_challenge_method": "S256",
        }
    ).encode()
    app_iter, status, headers = run_wsgi_app(
        app, FuzzRequest("GET", b"/authorize", query, {}, "", None, b"").environ(), buffered=True
    )
    b"".join(app_iter)
    assert status.startswith("302")
    assert query_of(headers["Location"])["error"] == "invalid_request"


def _send(app: Flask, request: FuzzRequest) -> tuple[int, bytes]:
    request.headers.setdefault("Accept-Language", "en")
    app_iter, status, _ = run_wsgi_app(app, request.environ(), buffered=True)
    return int(status.split()[0]), b"".join(app_iter)


def test_a_nul_character_is_refused_before_any_query(app: Flask) -> None:
    # PostgreSQL refuses NUL in text: client_id=%00 was a 500 on the production back
    # end (authorize, token, every client look-up)
    register(app, "rp")
    cases = [
        FuzzRequest("GET", b"/authorize", b"client_id=%00", {}, "", None, b""),
        FuzzRequest("POST", b"/token", b"client_id=%00", {}, "", FORM, b"grant_type=refresh_token"),
        FuzzRequest("POST", b"/introspect", b"", {}, "", FORM, b"token=x&client_id=rp\x00"),
        FuzzRequest(
            "POST",
            b"/login",
            b"",
            {"Accept": "application/json"},
            "",
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nal\x00ice\r\n--b--\r\n',
        ),
    ]
    for request in cases:
        status, body = _send(app, request)
        assert status == 400, (request.path, status, body[:300])
        assert b"invalid_request" in body or b"could not be understood" in body


def test_basic_with_nothing_after_it_is_a_json_error(app: Flask) -> None:
    # Authlib's extract_basic_authorization raised ValueError for "Basic " on the lean
    # introspection path, outside every handler
    for path in (b"/introspect", b"/revoke", b"/token"):
        request = FuzzRequest("POST", path, b"", {"Authorization": "Basic "}, "", FORM, b"token=x")
        status, body = _send(app, request)
        assert status == 400, (path, status)
        assert b'"invalid_request"' in body


def _multipart(parts: list[tuple[str | None, str | None, bytes]]) -> bytes:
    chunks = []
    for name, filename, value in parts:
        disposition = "form-data" + (f'; name="{name}"' if name is not None else "")
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--b\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
        )
    return b"".join(chunks) + b"--b--\r\n"


def test_a_file_where_a_form_expects_text_is_refused(app: Flask) -> None:
    # Flask-WTF merges uploaded files into the form data: a file named "username" at
    # /register was a 500 (len() of a FileStorage); a part without a name crashed the
    # NUL check
    cases: list[tuple[bytes, list[tuple[str | None, str | None, bytes]]]] = [
        (b"/register", [("username", "a.txt", b"bob"), ("password", None, b"x" * 12)]),
        (b"/login", [(None, None, b"x"), ("username", None, b"alice")]),
        (b"/account/realname/face", [("csrf_token", "t.txt", b"x")]),
    ]
    for path, parts in cases:
        request = FuzzRequest(
            "POST", path, b"", {}, "", "multipart/form-data; boundary=b", _multipart(parts)
        )
        status, body = _send(app, request)
        assert status == 400, (path, status, body[:200])
