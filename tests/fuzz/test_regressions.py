"""Focused regressions for what the fuzz found (each failed before its fix)."""

from __future__ import annotations

from flask import Flask
from werkzeug.test import run_wsgi_app

from tests.fuzz.strategies import FuzzRequest


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
