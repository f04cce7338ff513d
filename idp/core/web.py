"""Cross-cutting HTTP behaviour: request ids, security headers, input guards, errors.

Every error a user can cause ends here as a clear page (or JSON ``error`` /
``error_description`` for API endpoints) with a 4xx status; anything unexpected is
logged with its request id and answered with a plain 500 page, never a stack trace.
"""

from __future__ import annotations

import io
import logging
import re
import time
import uuid
from http import HTTPStatus
from typing import IO, Any
from urllib.parse import unquote_to_bytes, urlsplit

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from idp.core.db import DatabaseUnavailable, database_lost, error_summary
from idp.core.error_text import safe_description
from idp.core.navigation import DEFAULT_NEXT, safe_next
from idp.core.store import StoreUnavailable

log = logging.getLogger("idp.http")
access_log = logging.getLogger("idp.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch: "$" would allow a final newline
_FORM_TYPES = {"application/x-www-form-urlencoded"}
MAX_FORM_FIELDS = 50
RETRY_AFTER_SECONDS = "5"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

# Blueprints whose errors are JSON (API endpoints register themselves here).
JSON_BLUEPRINTS_KEY = "IDP_JSON_BLUEPRINTS"
JSON_PATHS_KEY = "IDP_JSON_PATHS"
# Endpoints that may receive a larger body than ``max_request_bytes`` (uploads).
BODY_LIMITS_KEY = "IDP_BODY_LIMITS"


class IdpRequest(Request):
    """Uploaded files stay in memory, never in a temporary file on disk: every body is
    bounded by ``max_request_bytes`` or its endpoint's ``allow_large_body`` limit.

    Raw non-ASCII bytes in the query string (a server passes them on as they came;
    browsers would have percent-encoded them) are percent-encoded on arrival, so that
    ``args`` and ``full_path`` can always be read (Werkzeug's raise for bytes that are
    not UTF-8); ``_guard_input`` still refuses a query that does not decode."""

    def __init__(self, environ: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(environ, *args, **kwargs)
        if not self.query_string.isascii():
            self.query_string = _RAW_BYTE.sub(_percent, self.query_string)

    def _load_form_data(self) -> None:
        """Multipart parts without a name are dropped: Werkzeug keys them ``None``, which
        Flask-WTF's CSRF check cannot read (a 500, found by the fuzz)."""
        super()._load_form_data()
        for name in ("form", "files"):
            fields = self.__dict__[name]
            if None in fields:
                kept = [(key, value) for key, value in fields.items(multi=True) if key is not None]
                self.__dict__[name] = self.parameter_storage_class(kept)

    # Werkzeug calls this with keyword arguments: the names stay although unused.
    def _get_file_stream(
        self,
        total_content_length: int | None,  # noqa: ARG002
        content_type: str | None,  # noqa: ARG002
        filename: str | None = None,  # noqa: ARG002
        content_length: int | None = None,  # noqa: ARG002
    ) -> IO[bytes]:
        return io.BytesIO()


_RAW_BYTE = re.compile(rb"[\x80-\xff]")


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


class BadInput(HTTPException):
    code = 400
    description = "The request could not be read."


def wants_json() -> bool:
    # from the app's config when ``begin`` has not run yet (an error raised by an
    # earlier hook, e.g. the session store out of reach)
    config = current_app.config
    if request.blueprint in g.get("json_blueprints", config.get(JSON_BLUEPRINTS_KEY, ())):
        return True
    json_paths = g.get("json_paths", config.get(JSON_PATHS_KEY, ()))
    if request.url_rule is None and request.path in json_paths:
        return True  # e.g. GET /token: no rule matched, but the caller is an API client
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and not request.accept_mimetypes.accept_html


def error_response(
    status: int, message: str, *, error: str = "invalid_request", title: str | None = None
) -> Response:
    if wants_json():
        # RFC 6749 5.2 characters only: a translated message gives way to the status text
        description = safe_description(message, fallback=HTTPStatus(status).phrase + ".")
        response = jsonify(error=error, error_description=description)
        response.status_code = status
        return response
    body = render_template(
        "error.html", status=status, title=title or _("Something went wrong"), message=message
    )
    return Response(body, status=status, mimetype="text/html")


class NulInInput(ValueError):
    """A NUL character in a parameter: no text field takes one, and PostgreSQL refuses
    it in a query (a 500 on that back end only, found by the fuzz)."""


def check_input(req: Request) -> None:
    """Raise ``UnicodeDecodeError`` / ``ValueError`` for undecodable or oversized input
    (Werkzeug would silently replace bad bytes), ``NulInInput`` for a NUL character in
    the query or a form (multipart text fields included; uploaded files may hold any
    bytes)."""
    check_urlencoded(req.query_string)
    if req.method in {"POST", "PUT", "PATCH"}:
        if req.mimetype in _FORM_TYPES:
            check_urlencoded(req.get_data(cache=True))
        elif req.mimetype == "multipart/form-data":
            for name, values in req.form.lists():
                if "\x00" in (name or "") or any("\x00" in (value or "") for value in values):
                    raise NulInInput("NUL in a form field")


def _guard_input() -> Response | None:
    """Reject undecodable input before any view reads it."""
    try:
        check_input(request)
    except UnicodeDecodeError:
        return error_response(
            400, _("The request is not valid UTF-8 text."), title=_("Unreadable request")
        )
    except NulInInput:
        return error_response(
            400, _("The request could not be understood."), title=_("Unreadable request")
        )
    except ValueError:
        return error_response(
            400, _("The request has too many fields."), title=_("Unreadable request")
        )
    if request.mimetype == "multipart/form-data" and request.files and not _takes_files():
        # a file where a form expects text (Flask-WTF merges files into the form data:
        # a text field given a file was a 500, found by the fuzz)
        return error_response(
            400, _("The request could not be understood."), title=_("Unreadable request")
        )
    return None


def _takes_files() -> bool:
    """Uploads go only to the endpoints that allow a larger body (``allow_large_body``),
    and never under the CSRF token's name."""
    if request.endpoint not in current_app.config.get(BODY_LIMITS_KEY, {}):
        return False
    return "csrf_token" not in request.files


def check_urlencoded(raw: bytes) -> None:
    """Raise ``UnicodeDecodeError`` unless every (percent-decoded) byte is UTF-8,
    ``ValueError`` for more than ``MAX_FORM_FIELDS`` fields and ``NulInInput`` for a
    NUL character."""
    if not raw:
        return
    if raw.count(b"&") + raw.count(b";") >= MAX_FORM_FIELDS:
        raise ValueError("too many fields")
    decoded = unquote_to_bytes(raw) if b"%" in raw else raw
    decoded.decode("utf-8")
    if b"\x00" in decoded:
        raise NulInInput("NUL in a parameter")


# Added to every response without looking first: no view sets them, and ``extend`` is
# far cheaper than one ``setdefault`` per header (this runs on every request).
_STATIC_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
]
_HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def request_id_from(supplied: str) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a new one."""
    return supplied if _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex


def security_headers(*, https: bool) -> list[tuple[str, str]]:
    return [*_STATIC_HEADERS, _HSTS] if https else _STATIC_HEADERS


def finish_response(response: Response, *, https: bool, request_id: str) -> None:
    """Security headers and the request id, on every response."""
    headers = response.headers
    headers.extend(security_headers(https=https))
    if "Cache-Control" not in headers and response.content_type.startswith("text/html"):
        headers["Cache-Control"] = "no-store"
    headers["X-Request-Id"] = request_id


def log_access(
    method: str,
    path: str,
    status: int,
    started: float,
    client_ip: str | None,
    *,
    request_id: str | None = None,
) -> None:
    """The access log line; ``request_id`` for a caller outside a request context (the
    lean endpoints), where the log filter cannot find it."""
    if access_log.isEnabledFor(logging.INFO):
        extra: dict[str, Any] = {
            "method": method,
            # the path only: query strings may carry codes and tokens
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "client_ip": client_ip,
        }
        if request_id is not None:
            extra["request_id"] = request_id
        access_log.info("request", extra=extra)


def _security_headers(response: Response) -> Response:
    finish_response(response, https=request.scheme == "https", request_id=g.get("request_id", ""))
    started = g.get("request_started_at")
    if started is not None:
        log_access(request.method, request.path, response.status_code, started, request.remote_addr)
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        return error_response(413, _("The request is too large."), title=_("Request too large"))
    messages: dict[int, Any] = {
        400: _("The request could not be understood."),
        403: _("You are not allowed to do that."),
        404: _("There is no page at this address."),
        405: _("This address does not accept that kind of request."),
        429: _("Too many requests. Please wait and try again."),
    }
    message = messages.get(status, exc.description or _("The request failed."))
    if isinstance(exc, BadInput) and exc.description:
        message = exc.description
    error = {404: "not_found", 405: "invalid_request", 429: "slow_down"}.get(
        status, "invalid_request"
    )
    if status >= 500:
        error = "server_error"
    return error_response(status, str(message), error=error)


def _csrf_error(_exc: CSRFError) -> BaseResponse:
    """A form without its token, or with a stale one. In a browser whose session has
    ended (the token lived in it: an idle timeout, a sign-out elsewhere), the form goes
    back to sign-in with a message, then on to the page it was sent from; otherwise the
    page says what to do. Nothing the form asked for is done either way."""
    if request.method == "POST" and not wants_json() and _session_ended():
        flash(_("Your session has expired. Please sign in again."), "info")
        return redirect(url_for("login.login", next=_sent_from()), code=303)
    return error_response(
        400,
        _(
            "This form has expired or was not sent from this site. Go back, reload the page "
            "and try again."
        ),
        title=_("Form expired"),
        error="invalid_request",
    )


def _session_ended() -> bool:
    """The browser sent a session cookie, but no session is kept under it any more (it
    timed out or was ended elsewhere); a form without a cookie at all, or in a session
    that still exists, is not that."""
    name = getattr(current_app.session_interface, "cookie_name", None)
    if not name or name not in request.cookies:
        return False
    return bool(getattr(session, "new", False)) and "uid" not in session


def _sent_from() -> str:
    """The local page a form was sent from (its Referer on this site), or the account."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc != request.host or request.host == "":
        return DEFAULT_NEXT
    path = referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return safe_next(path)


def unavailable_response() -> Response:
    """The 503 answer (JSON ``temporarily_unavailable`` or a page) when a dependency
    (database, store) cannot be reached."""
    response = error_response(
        503,
        _("The service is temporarily unavailable. Please try again shortly."),
        error="temporarily_unavailable",
        title=_("Temporarily unavailable"),
    )
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def make_unavailable(response: Response) -> None:
    """Turn an answer that is already made into the 503 answer, in place: for failures
    after the view (saving the session), when the answer would no longer be true."""
    replacement = unavailable_response()
    for header in ("Location", "Set-Cookie", "Content-Type", "Content-Length", "Retry-After"):
        response.headers.pop(header, None)
    response.status_code = 503
    response.headers["Content-Type"] = replacement.headers["Content-Type"]
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    if replacement.content_type.startswith("text/html"):
        response.headers["Cache-Control"] = "no-store"
    response.set_data(replacement.get_data())


def dependency_lost(exc: BaseException) -> bool:
    """True when ``exc``, or an error it was raised from, says the store or the database
    cannot be reached (a 503, not a bug)."""
    seen: BaseException | None = exc
    for _depth in range(5):
        if seen is None:
            return False
        if isinstance(seen, StoreUnavailable) or database_lost(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def describe_dependency_error(exc: BaseException) -> str:
    """One line for the log (a database error without its SQL and parameters)."""
    if isinstance(exc, DBAPIError):
        return f"database: {error_summary(exc)}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _unavailable(exc: Exception) -> Response:
    log.error("dependency unavailable: %s", describe_dependency_error(exc))
    return unavailable_response()


def _unexpected(exc: Exception) -> Response:
    if dependency_lost(exc):
        return _unavailable(exc)
    log.error("unhandled error", exc_info=exc)
    return error_response(
        500,
        _("An unexpected error occurred. It has been logged; please try again."),
        error="server_error",
    )


def allow_large_body(app: Flask, endpoint: str, max_bytes: int) -> None:
    """Let one endpoint receive up to ``max_bytes`` (e.g. a photo upload) while every
    other keeps ``max_request_bytes``. Applied before anything reads the body."""
    app.config.setdefault(BODY_LIMITS_KEY, {})[endpoint] = max_bytes


def trust_proxies(app: Flask, count: int) -> None:
    """Take the client address and scheme from ``count`` trusted proxies (wraps the
    whole WSGI stack: call it last)."""
    if count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count
        )


def init_app(app: Flask) -> None:
    app.request_class = IdpRequest
    app.config.setdefault(JSON_BLUEPRINTS_KEY, set())
    app.config.setdefault(JSON_PATHS_KEY, set())
    json_blueprints: set[str] = app.config[JSON_BLUEPRINTS_KEY]
    json_paths: set[str] = app.config[JSON_PATHS_KEY]
    body_limits: dict[str, int] = app.config.setdefault(BODY_LIMITS_KEY, {})

    def begin() -> None:
        g.request_started_at = time.perf_counter()
        g.request_id = request_id_from(request.headers.get("X-Request-Id", ""))
        g.json_blueprints = json_blueprints
        g.json_paths = json_paths
        if body_limits and request.endpoint in body_limits:
            request.max_content_length = body_limits[request.endpoint]

    app.before_request(begin)
    app.before_request(_guard_input)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreUnavailable, _unavailable)
    app.register_error_handler(DatabaseUnavailable, _unavailable)
    # any other error: a 503 when it says the database connection is lost (an
    # OperationalError, an InterfaceError...), a logged 500 otherwise
    app.register_error_handler(Exception, _unexpected)


def register_json_blueprint(app: Flask, blueprint: Blueprint) -> None:
    """Errors of this blueprint's endpoints (even unmatched methods) are JSON."""
    app.config.setdefault(JSON_BLUEPRINTS_KEY, set()).add(blueprint.name)
    paths = app.config.setdefault(JSON_PATHS_KEY, set())
    paths.update(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(blueprint.name + ".")
    )
