"""What every answer must be, whatever the request (issue 9, section 2)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from werkzeug.datastructures import Headers

from tests.fuzz.endpoints import Kind, Target
from tests.fuzz.strategies import FuzzRequest

# RFC 6749 5.2: error is %x20-21 / %x23-5B / %x5D-7E (no space); so is error_description
ERROR_CODE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
DESCRIPTION = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")
STACK_TRACE = re.compile(rb'Traceback \(most recent call last\)|File "[^"]+", line \d+')


@dataclass
class Answer:
    status: int
    headers: Headers
    body: bytes

    @property
    def mimetype(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)


def check_json_error(answer: Answer) -> None:
    assert answer.mimetype == "application/json", answer.headers
    data = answer.json()
    assert isinstance(data, dict), data
    if answer.status < 400:
        return
    if not data and answer.status == 401:
        return  # RFC 6750 3.1: no error code when the request carried no token
    assert isinstance(data.get("error"), str), data
    assert ERROR_CODE.match(data["error"]), data
    description = data.get("error_description", "")
    assert isinstance(description, str), data
    assert DESCRIPTION.match(description), data


def check_scim_error(answer: Answer) -> None:
    """RFC 7644 3.12: an Error message whose status is the HTTP status."""
    data = answer.json()
    assert isinstance(data, dict), data
    if answer.status < 400:
        return
    assert data.get("schemas") == ["urn:ietf:params:scim:api:messages:2.0:Error"], data
    assert data.get("status") == str(answer.status), data


def check_location(answer: Answer, request: FuzzRequest, issuer: str, redirect_uri: str) -> None:
    """A redirect stays on this site, or goes to the registered redirect URI (an
    authorization answer: a code or an error, with the state sent)."""
    location = answer.headers["Location"]
    parts = urlsplit(location)
    if location.startswith(redirect_uri + "?"):
        assert request.path.startswith(b"/authorize"), location
        query = parse_qs(parts.query)
        assert "code" in query or "error" in query, location
        if "error" in query:
            assert ERROR_CODE.match(query["error"][0]), location
            assert DESCRIPTION.match(query.get("error_description", [""])[0]), location
        assert query.get("iss") == [issuer], location
        state = request.single("state")
        if state and request.method == "GET" and request.path == b"/authorize":
            assert query.get("state") == [state], (location, state)
        return
    if location.startswith(redirect_uri):
        raise AssertionError(f"a redirect to the client without a query: {location}")
    same_site = (not parts.scheme and not parts.netloc) or location.startswith(issuer + "/")
    assert same_site, f"a redirect away from the site: {location}"
    assert not location.startswith("//"), location


def check_answer(
    target: Target, request: FuzzRequest, answer: Answer, *, issuer: str, redirect_uri: str
) -> None:
    assert answer.status < 500 or answer.status == 503, (answer.status, answer.body[:500])
    assert not STACK_TRACE.search(answer.body), answer.body[:2000]
    if answer.status == 503:
        # a deliberate answer only: the service says it is unavailable
        assert b"temporarily_unavailable" in answer.body or b"unavailable" in answer.body
    if request.method == "HEAD":
        assert not answer.body
        return
    if request.method == "OPTIONS" and answer.status == 200:
        assert not answer.body  # Flask's automatic answer: the allowed methods
        assert "Allow" in answer.headers
        return
    if 300 <= answer.status < 400 and "Location" in answer.headers:
        check_location(answer, request, issuer, redirect_uri)
        return
    if target.kind in (Kind.TOKEN, Kind.USERINFO):
        check_json_error(answer)
        return
    if target.kind is Kind.SCIM and answer.mimetype == "application/scim+json":
        check_scim_error(answer)
        return
    if answer.mimetype == "application/json":
        check_json_error(answer)
        return
    if answer.status >= 400 and target.kind in (Kind.AUTHORIZE, Kind.PAGE):
        assert answer.mimetype == "text/html", (answer.status, answer.headers)
        assert b"<html" in answer.body.lower(), answer.body[:200]
