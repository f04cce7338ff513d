"""Logout: RP-initiated (OpenID Connect RP-Initiated Logout 1.0) and back-channel
(OpenID Connect Back-Channel Logout 1.0).

``/session/end`` accepts ``id_token_hint`` and/or ``client_id``, a registered
``post_logout_redirect_uri`` and ``state``. An unregistered redirect URI, or an ID token
we did not issue, gets an error page, never a redirect (no open redirector). With a
hint that matches the session the user is signed out at once; otherwise they confirm.

Whenever a signed-in session ends (here, at ``/logout``, or when another user signs in
on the browser), every service that received tokens in it and registered a
``backchannel_logout_uri`` is owed a logout token. Notices are written to the database
with the logout and delivered by a background thread in every worker, with retries
and back-off (5 s, 15 s, 45 s, ... at most an hour apart); one that keeps failing is
marked failed (and audited), never lost.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

from authlib.common.urls import add_params_to_uri
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from joserfc.errors import JoseError
from sqlalchemy import select, update

from accounts.people.session import current_user
from idp.core.audit.services import AuditContext, AuditLog
from idp.core.runtime import Runtime, audit_log, db
from idp.core.sessions import session_ended, sign_out
from idp.core.web import dependency_lost, describe_dependency_error, error_response
from idp.oauth.clients import ClientInfo
from idp.oauth.models import LogoutDelivery

log = logging.getLogger(__name__)
bp = Blueprint("oauth_logout", __name__, template_folder="templates")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_LIFETIME = 120
CONFIRM_TTL = 600
POLL_SECONDS = 2.0
CLAIM_SECONDS = 60
MAX_RETRY_DELAY = 3600


def _oauth() -> Any:
    from idp.oauth.server import OAuthRuntime

    return OAuthRuntime.of()


# -- RP-initiated logout


def _hint_claims(id_token: str) -> dict[str, Any] | None:
    """Claims of an ID token we issued (expired ones are fine for a logout hint)."""
    try:
        header, claims = _oauth().keys.verify(id_token)
    except (JoseError, ValueError):
        return None
    if header.get("typ") not in (None, "JWT") or claims.get("iss") != _oauth().issuer:
        return None
    return dict(claims)


def _bad_request(message: str) -> Response:
    return error_response(400, message, title=_("The sign-out request cannot be processed"))


@bp.route("/session/end", methods=["GET", "POST"])
def end_session() -> ResponseReturnValue:
    params = request.form if request.method == "POST" else request.args
    hint = params.get("id_token_hint")
    client_id = params.get("client_id")
    redirect_uri = params.get("post_logout_redirect_uri")
    claims = None
    if hint:
        claims = _hint_claims(hint)
        if claims is None:
            return _bad_request(_("The application sent an ID token this service did not issue."))
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if client_id and client_id not in audiences:
            return _bad_request(_("The application's identifier does not match the ID token."))
        client_id = client_id or (audiences[0] if len(audiences) == 1 else None)
    client: ClientInfo | None = _oauth().clients.get(client_id) if client_id else None
    if client_id and client is None:
        return _bad_request(_("The application is not known to this service."))
    if redirect_uri:
        if client is None or redirect_uri not in client.post_logout_redirect_uris:
            return _bad_request(
                _("The address to return to is not registered for this application.")
            )
        if params.get("state"):
            redirect_uri = add_params_to_uri(redirect_uri, [("state", params["state"])])
    user = current_user()
    if user is None:
        return _finish(redirect_uri)
    # only an ID token of this very session signs out without asking (RP-Initiated
    # Logout 1.0 section 2): an old hint may have leaked through URLs and logs
    matches = claims is not None and claims.get("sid") == session.get("sid")
    if matches:
        return _log_out(redirect_uri, client)
    lid = secrets.token_urlsafe(24)
    Runtime.of().store.set(
        f"logout:{lid}",
        json.dumps({"redirect": redirect_uri, "client": client_id}).encode(),
        CONFIRM_TTL,
    )
    return make_response(
        render_template(
            "oauth/logout_confirm.html",
            lid=lid,
            form=FlaskForm(),
            service_name=client.name if client else None,
        )
    )


@bp.post("/session/end/confirm")
def confirm() -> ResponseReturnValue:
    form = FlaskForm()
    if not form.validate_on_submit():
        return _bad_request(_("This form has expired. Please sign out again."))
    raw = Runtime.of().store.take(f"logout:{request.form.get('lid', '')[:64]}")
    pending = json.loads(raw) if raw else {}
    client = _oauth().clients.get(pending.get("client")) if pending.get("client") else None
    if request.form.get("logout") != "yes":
        # not signed out: the service's post-logout address would say otherwise
        return redirect("/account")
    return _log_out(pending.get("redirect"), client)


def _log_out(redirect_uri: str | None, client: ClientInfo | None) -> ResponseReturnValue:
    user = current_user()
    if user is not None:
        audit_log().record(
            "signout",
            subject=user.subject,
            details={"initiated_by": client.client_id if client else "user"},
        )
        db().commit()
    sign_out()
    return _finish(redirect_uri)


def _finish(redirect_uri: str | None) -> ResponseReturnValue:
    if redirect_uri:
        return redirect(redirect_uri)
    return make_response(render_template("oauth/logged_out.html"))


# -- back-channel logout: owing notices


def enqueue_logouts(sender: Flask, data: dict[str, Any], **_: Any) -> None:
    """Record a logout notice for every service of the ending session that wants one."""
    provider = sender.extensions.get("idp.oauth")
    if provider is None or not data.get("rps") or not data.get("sub"):
        return
    now = provider.core.clock.now()
    owed = 0
    for client_id in data["rps"]:
        client = provider.clients.get(client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        db().add(
            LogoutDelivery(
                client_id=client.client_id,
                uri=client.backchannel_logout_uri,
                subject=provider.tokens().subject(client, data["sub"]),
                sid=data.get("sid"),
                created_at=now,
                next_attempt_at=now,
            )
        )
        owed += 1
    if owed:
        db().commit()
        deliverer: BackchannelDeliverer | None = sender.extensions.get("idp.backchannel")
        if deliverer is not None:
            deliverer.wake()


# -- back-channel logout: delivering


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # a redirect is a failed delivery, never followed


class BackchannelDeliverer:
    """Delivers owed logout tokens; one per app, run by a daemon thread in servers."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._paused = False
        self._opener = urllib.request.build_opener(_NoRedirects)

    def wake(self) -> None:
        self._event.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="backchannel", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._event.set()

    def _loop(self) -> None:
        while not self._stopped:
            self._event.wait(POLL_SECONDS)
            self._event.clear()
            self.run_pass()

    def run_pass(self) -> None:
        """One pass of the thread's loop: it never ends the thread. While the database
        is out of reach the deliveries wait (said once in the log, and once when they
        resume); nothing owed is lost, since the notices are rows in the database."""
        try:
            with self._app.app_context():
                self.deliver_due()
        except Exception as exc:
            if not dependency_lost(exc):
                log.exception("back-channel logout delivery pass failed")
            elif not self._paused:
                self._paused = True
                log.error("back-channel logout deliveries wait: %s", describe_dependency_error(exc))
            return
        if self._paused:
            self._paused = False
            log.warning("back-channel logout deliveries resumed")

    def deliver_due(self, limit: int = 50) -> int:
        """One pass: deliver what is due now; returns how many were delivered."""
        provider = _oauth()
        clock = provider.core.clock
        now = clock.now()
        session_ = db()
        due = session_.scalars(
            select(LogoutDelivery)
            .where(
                LogoutDelivery.delivered_at.is_(None),
                LogoutDelivery.failed_at.is_(None),
                LogoutDelivery.next_attempt_at <= now,
            )
            .order_by(LogoutDelivery.next_attempt_at)
            .limit(limit)
        ).all()
        delivered = 0
        for item in due:
            # claim it (another worker may be looking at the same row)
            claimed = session_.execute(
                update(LogoutDelivery)
                .where(
                    LogoutDelivery.id == item.id,
                    LogoutDelivery.next_attempt_at == item.next_attempt_at,
                    LogoutDelivery.delivered_at.is_(None),
                )
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)),
                execution_options={"synchronize_session": False},
            )
            session_.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            delivered += self._attempt(item.id)
        return delivered

    def _attempt(self, delivery_id: int) -> int:
        provider = _oauth()
        settings = provider.core.settings
        clock = provider.core.clock
        session_ = db()
        item = session_.get(LogoutDelivery, delivery_id)
        if item is None:
            return 0
        client = provider.clients.get(item.client_id)
        error = None
        if client is None:
            error = "the client no longer exists"
        else:
            error = self._post(
                item.uri, self._logout_token(client, item), settings.backchannel_timeout_seconds
            )
        now = clock.now()
        item.attempts += 1
        if error is None:
            item.delivered_at = now
            item.last_error = None
            session_.commit()
            return 1
        item.last_error = error[:500]
        if item.attempts >= settings.backchannel_max_attempts:
            item.failed_at = now
            AuditLog(
                session_, provider.core.keys.secrets, clock, AuditContext(actor="backchannel")
            ).record(
                "backchannel_logout.failed",
                "failure",
                subject=f"client:{item.client_id}",
                details={"attempts": item.attempts, "error": item.last_error},
            )
            log.warning("back-channel logout to %s failed for good: %s", item.client_id, error)
        else:
            delay = min(5 * 3 ** (item.attempts - 1), MAX_RETRY_DELAY)
            item.next_attempt_at = now + timedelta(seconds=delay)
        session_.commit()
        return 0

    def _logout_token(self, client: ClientInfo, item: LogoutDelivery) -> str:
        provider = _oauth()
        now = int(provider.core.clock.now().timestamp())
        claims: dict[str, Any] = {
            "iss": provider.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_LIFETIME,
            "jti": uuid.uuid4().hex,
            "sub": item.subject,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        if item.sid:
            claims["sid"] = item.sid
        signed: str = provider.keys.sign(
            claims, alg=client.id_token_signed_response_alg, typ="logout+jwt"
        )
        return signed

    def _post(self, uri: str, logout_token: str, timeout: float) -> str | None:
        body = urllib.parse.urlencode({"logout_token": logout_token}).encode()
        request_ = urllib.request.Request(  # noqa: S310 - a URI the operator registered
            uri,
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with self._opener.open(request_, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if status in (200, 204) else f"HTTP {status}"


def deliverer(app: Flask | None = None) -> BackchannelDeliverer:
    target = app or current_app
    value: BackchannelDeliverer = target.extensions["idp.backchannel"]
    return value


def init_app(app: Flask, *, background: bool = False) -> None:
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(end_session)
    app.extensions["idp.backchannel"] = worker = BackchannelDeliverer(app)
    session_ended.connect(enqueue_logouts, sender=app, weak=False)
    if background:
        worker.start()
