"""The machine-to-machine endpoints (``POST /token``, ``/introspect``, ``/revoke``)
served without Flask's per-request machinery.

These are the provider's hottest endpoints (resource servers introspect on every API
call) and they need nothing a page needs: no cookie session, CSRF check, locale,
blueprint hooks or URL routing. This WSGI layer in front of Flask answers them with an
app context only, and runs exactly the same code inside: Authlib's
``create_token_response`` / ``create_endpoint_response`` with our grants and endpoints.
The cross-cutting parts (request id, input guard, security headers, metrics, access
log, error answers) are the same functions the Flask hooks use;
tests/oauth/test_lean.py maps every hook of the app to its counterpart here. Every
other request (and a GET to these paths) goes to Flask unchanged; Flask keeps the rules
of these paths without views (``idp.oauth.endpoints``). Measured: about 0.15 ms of
server CPU less per request (docs/decisions/0014-lean-token-endpoints.md).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Flask, Request, Response, g
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from idp.core.error_text import safe_description
from idp.core.metrics import observe_request
from idp.core.web import (
    RETRY_AFTER_SECONDS,
    NulInInput,
    check_input,
    check_urlencoded,
    dependency_lost,
    describe_dependency_error,
    finish_response,
    log_access,
    request_id_from,
    security_headers,
)
from idp.oauth.introspection import access_token_introspection, acting_authorisation
from idp.oauth.server import JSON_HEADERS, OAuthRuntime
from idp.oauth.tokens import REFRESH_PREFIX

log = logging.getLogger("idp.http")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _token(provider: OAuthRuntime, oauth_request: OAuth2Request) -> Response:
    response: Response = provider.server.create_token_response(oauth_request)
    return response


def _introspection(provider: OAuthRuntime, oauth_request: OAuth2Request) -> Response:
    response: Response = provider.server.create_endpoint_response("introspection", oauth_request)
    return response


def _revocation(provider: OAuthRuntime, oauth_request: OAuth2Request) -> Response:
    response: Response = provider.server.create_endpoint_response("revocation", oauth_request)
    return response


Handler = Callable[[OAuthRuntime, OAuth2Request], Response]

# path -> (endpoint name, as Flask's rule and the metrics name it; handler)
ROUTES: dict[str, tuple[str, Handler]] = {
    "/token": ("oauth.token", _token),
    "/introspect": ("oauth.introspect", _introspection),
    "/revoke": ("oauth.revoke", _revocation),
}


def _json_error(status: int, error: str, description: str) -> Response:
    body = json.dumps({"error": error, "error_description": safe_description(description)})
    return Response(body, status=status, headers=JSON_HEADERS)


class LeanEndpoints:
    def __init__(self, app: Flask, provider: OAuthRuntime, downstream: WsgiApp) -> None:
        self._app = app
        self._provider = provider
        self._downstream = downstream

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        route = ROUTES.get(path)
        # Werkzeug upper-cases the method: so does this test, or a "post" would reach
        # Flask's view-less rule
        if route is None or environ.get("REQUEST_METHOD", "").upper() != "POST":
            return self._downstream(environ, start_response)
        started = time.perf_counter()
        if path == "/introspect":
            answered = self._introspect_common_case(environ, start_response, started)
            if answered is not None:
                return answered
        request = self._app.request_class(environ)
        request_id = request_id_from(request.headers.get("X-Request-Id", ""))
        endpoint, handler = route
        # the app context: Request.max_content_length reads the app config, db() keeps
        # the session there (closed at the end), log lines read the request id from g
        with self._app.app_context():
            g.request_id = request_id
            response = self._answer(request, handler)
        finish_response(response, https=request.scheme == "https", request_id=request_id)
        observe_request(endpoint, "POST", response.status_code, started)
        log_access(
            "POST",
            request.path,
            response.status_code,
            started,
            request.remote_addr,
            request_id=request_id,
        )
        return response(environ, start_response)

    def _answer(self, request: Request, handler: Handler) -> Response:
        try:
            check_input(request)
            repeated = _repeated_parameter(request)
            if repeated is not None:
                # RFC 6749 3.2: parameters MUST NOT be included more than once
                return _json_error(400, "invalid_request", f"The parameter {repeated} is repeated.")
            if _basic_credentials(request.headers.get("Authorization", "")) is None:
                return _json_error(400, "invalid_request", "The Authorization header is malformed.")
            # the explicit request is used as it is (IdpAuthorizationServer), so Authlib
            # needs no ``flask.request`` and no request context
            return handler(self._provider, FlaskOAuth2Request(request))
        except UnicodeDecodeError:
            return _json_error(400, "invalid_request", "The request is not valid UTF-8.")
        except RequestEntityTooLarge:
            return _json_error(413, "invalid_request", "The request is too large.")
        except HTTPException as exc:  # as Flask's handler of HTTP errors answers them
            status = exc.code or 500
            error = "server_error" if status >= 500 else "invalid_request"
            return _json_error(status, error, HTTPStatus(status).phrase + ".")
        except NulInInput:
            return _json_error(400, "invalid_request", "The request contains a NUL character.")
        except ValueError:
            return _json_error(400, "invalid_request", "The request has too many fields.")
        except Exception as exc:
            if dependency_lost(exc):
                log.error("dependency unavailable: %s", describe_dependency_error(exc))
                response = _json_error(
                    503, "temporarily_unavailable", "The service is temporarily unavailable."
                )
                response.headers["Retry-After"] = RETRY_AFTER_SECONDS  # as Flask's 503s
                return response
            log.exception("unhandled error")
            return _json_error(500, "server_error", "An unexpected error occurred.")

    def _introspect_common_case(
        self, environ: dict[str, Any], start_response: StartResponse, started: float
    ) -> Iterable[bytes] | None:
        """What resource servers do on every API call: authenticate with
        ``client_secret_basic`` and ask about an access token. Answered straight from the
        WSGI environ with the same checks as Authlib's endpoint (the same client look-up
        and secret check, the same token verifier and payload), in about half the CPU;
        anything else (another client authentication, a refresh token, more parameters,
        undecodable input, every error) returns None and Authlib answers."""
        token = _plain_introspection_request(environ)
        if token is None:
            return None
        provider = self._provider
        credentials = _basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is None:
            return None
        client_id, secret = credentials
        if not client_id or not secret:
            return None
        try:
            client = provider.clients.get(client_id)
            if (
                client is None
                or client.token_endpoint_auth_method != "client_secret_basic"
                or not client.check_client_secret(secret)
            ):
                return None
            claims = provider.verifier.claims(token)
        except Exception:  # noqa: BLE001 - the full path answers it (503, or a logged 500)
            return None
        if claims is not None and acting_authorisation(claims) is not None:
            return None  # acting for an organisation: the full path asks the authorisation
        body = json.dumps(
            access_token_introspection(claims) if claims else {"active": False},
            separators=(",", ":"),
        ).encode()
        https = environ.get("wsgi.url_scheme") == "https"
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        headers = [
            *JSON_HEADERS,
            ("Content-Length", str(len(body))),
            *security_headers(https=https),
            ("X-Request-Id", request_id),
        ]
        start_response("200 OK", headers)
        observe_request("oauth.introspect", "POST", 200, started)
        log_access(
            "POST", "/introspect", 200, started, environ.get("REMOTE_ADDR"), request_id=request_id
        )
        return [body]


def _basic_credentials(header: str) -> tuple[str | None, str | None] | None:
    """What Authlib's ``extract_basic_authorization`` makes of the header, or None when
    it would raise (``ValueError`` for ``Basic`` followed by nothing but spaces: found
    by the fuzz, a crash in the WSGI layer)."""
    try:
        found: tuple[str | None, str | None] = extract_basic_authorization(
            {"Authorization": header}
        )
    except ValueError:
        return None
    return found


def _repeated_parameter(request: Request) -> str | None:
    """The name of a parameter sent more than once (in the body or the query), if any.
    ``resource`` may repeat (RFC 8707); it is ignored here like any unknown parameter."""
    for fields in (request.form, request.args):
        for name, values in fields.lists():
            if len(values) > 1 and name not in MAY_REPEAT:
                return str(name)[:40]
    return None


MAY_REPEAT = frozenset({"resource"})


def _plain_introspection_request(environ: dict[str, Any]) -> str | None:
    """The token of a plain form ``token=...[&token_type_hint=access_token]``, else None.
    The body is put back for whoever answers instead."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= _FAST_BODY_LIMIT:
        return None
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        check_urlencoded(raw)
        fields = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=True)
    except ValueError:  # UnicodeDecodeError included
        return None
    form: dict[str, str] = dict(fields)
    token = form.get("token")
    if len(form) != len(fields) or not token or set(form) - {"token", "token_type_hint"}:
        return None
    if token.startswith(REFRESH_PREFIX):
        return None
    if form.get("token_type_hint", "access_token") != "access_token":
        return None
    return token


_FAST_BODY_LIMIT = 16_384


def init_app(app: Flask) -> None:
    app.wsgi_app = LeanEndpoints(  # type: ignore[method-assign]
        app, OAuthRuntime.of(app), app.wsgi_app
    )
