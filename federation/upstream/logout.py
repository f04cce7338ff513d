"""Single logout with an upstream (issue 13 part 6, decision 42).

Both directions, for a session that was signed in through an upstream:

* **Signing out here ends the upstream session.** The sign-in keeps, in the session,
  the upstream's name, its subject, its session id (the ID token's ``sid``) and the ID
  token (``remember``). When the person signs out (``/logout``, or a service's
  ``/session/end``), ``logout_redirect`` sends the browser on to the upstream's
  ``end_session_endpoint`` (RP-Initiated Logout 1.0) with the ID token as the hint and
  ``/federation/NAME/logged-out`` as the way back; that page continues to where the
  sign-out was going (the sign-in page, or the service's registered post-logout
  address). The local session has ended before the browser leaves: an upstream that is
  down or refuses leaves nobody signed in here.
* **The upstream's back-channel logout ends the sessions made from its session.**
  ``POST /federation/NAME/backchannel-logout`` takes a logout token (Back-Channel Logout
  1.0): checked by the relying party (signature, ``iss``, ``aud``, a recent ``iat``,
  the event, no ``nonce``), single use by its ``jti``. The sessions it names are those
  signed in through that upstream with its ``sid`` (found through an index from the
  upstream session to the account, kept in the store as long as a session lives), or,
  with only a ``sub``, every session made through that upstream for the account linked
  to it. Sessions signed in another way are left alone. Ending them tells this
  service's own relying parties over the back channel in turn (``session_ended``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
)
from flask.typing import ResponseReturnValue

from federation.upstream.client import (
    LOGOUT_TOKEN_MAX_AGE,
    UpstreamConfig,
    UpstreamIdentity,
    UpstreamRefused,
)
from federation.upstream.container import Upstreams
from idp.core.audit.services import FAILURE
from idp.core.runtime import Runtime, audit_log, db
from idp.core.sessions import UPSTREAM_SESSION, end_sessions_where

bp = Blueprint("federation_logout", __name__, template_folder="templates")

LOGOUT_STATE_TTL = 600
MAX_HINT = 8192  # a larger ID token is not carried (the logout goes without a hint)
MAX_TOKEN = 16384
_SID_INDEX = "fed:usid:"
_LOGOUT_STATE = "fed:logout:"
_JTI = "fed:jti:"


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _sid_index(name: str, sid: str) -> str:
    return _SID_INDEX + _hash(name, sid)


# -- at sign-in --------------------------------------------------------------------------


def proof_state(config: UpstreamConfig, identity: UpstreamIdentity) -> dict[str, str]:
    """What the sign-in's ``Proof`` carries to ``remember`` (strings only: it waits in
    the session while a second factor is due)."""
    state = {"up": config.name, "up_sub": identity.subject}
    if identity.session_id:
        state["up_sid"] = identity.session_id
    if identity.id_token and len(identity.id_token) <= MAX_HINT:
        state["up_idt"] = identity.id_token
    return state


def remember(state: Mapping[str, str]) -> None:
    """The sign-in completed: keep the upstream session in the new session, and index
    it for the upstream's back-channel logout."""
    name = state.get("up")
    uid = session.get("uid")
    if not name or uid is None:
        return
    session[UPSTREAM_SESSION] = {
        "name": name,
        "sub": state.get("up_sub"),
        "sid": state.get("up_sid"),
        "idt": state.get("up_idt"),
    }
    sid = state.get("up_sid")
    if sid:
        core = Runtime.of()
        core.store.set_add(_sid_index(name, sid), str(uid), core.settings.session_max_age)


# -- signing out here ----------------------------------------------------------------------


def logout_redirect(final_url: str | None) -> str | None:
    """Before this session ends: the upstream's end-session address to send the browser
    to next, or None (not signed in through an upstream, or it has no such endpoint, or
    it cannot be reached). ``final_url`` is where the sign-out goes afterwards (None:
    the signed-out page)."""
    record = session.get(UPSTREAM_SESSION)
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        return None
    upstreams = Upstreams.of()
    config = upstreams.registry(actor="web").get(record["name"])
    if config is None:
        return None
    state = secrets.token_urlsafe(24)
    try:
        url = upstreams.relying_party(config).end_session_url(
            id_token_hint=record.get("idt") if isinstance(record.get("idt"), str) else None,
            post_logout_redirect_uri=upstreams.logged_out_uri(config.name),
            state=state,
        )
    except UpstreamRefused as exc:
        audit_log("web").record(
            "federation.signout",
            FAILURE,
            details={"upstream": config.name, "reason": exc.code[:64]},
        )
        db().commit()
        return None
    if url is None:
        return None
    Runtime.of().store.set(
        _LOGOUT_STATE + _hash(state),
        json.dumps({"u": config.name, "final": final_url}).encode(),
        LOGOUT_STATE_TTL,
    )
    return url


@bp.get("/federation/<name>/logged-out")
def logged_out(name: str) -> ResponseReturnValue:
    """Back from the upstream's end-session page: on to where the sign-out was going
    (only an address stored at the sign-out, never one from the query)."""
    state = request.args.get("state", "")
    raw = Runtime.of().store.take(_LOGOUT_STATE + _hash(state)) if 0 < len(state) <= 64 else None
    record = json.loads(raw) if raw else {}
    if record.get("u") == name and isinstance(record.get("final"), str):
        return redirect(record["final"])
    return make_response(render_template("federation/logged_out.html"))


# -- the upstream's back-channel logout ----------------------------------------------------


def _refused(name: str, code: str, description: str) -> Response:
    audit_log("web").record(
        "federation.backchannel_logout",
        FAILURE,
        details={"upstream": name[:63], "reason": code[:64]},
    )
    db().commit()
    response = jsonify(error="invalid_request", error_description=description)
    response.status_code = 400
    response.headers["Cache-Control"] = "no-store"
    return response


def end_upstream_sessions(config: UpstreamConfig, *, sub: str | None, sid: str | None) -> int:
    """End the local sessions made through this upstream's session ``sid`` (or, with
    only ``sub``, through any session of that upstream subject). Returns how many."""
    store = Runtime.of().store
    uids: set[int] = set()
    if sid is not None:
        uids |= {
            int(uid) for uid in store.set_members(_sid_index(config.name, sid)) if uid.isdigit()
        }
    if sub is not None:
        link = Upstreams.of().links().find(config.issuer, sub)
        if link is not None:
            uids.add(link.user_id)

    def made_there(data: dict[str, Any]) -> bool:
        record = data.get(UPSTREAM_SESSION)
        return (
            isinstance(record, dict)
            and record.get("name") == config.name
            and (sid is None or record.get("sid") == sid)
            and (sub is None or record.get("sub") == sub)
        )

    ended = sum(end_sessions_where(uid, made_there) for uid in sorted(uids))
    if sid is not None:
        store.delete(_sid_index(config.name, sid))
    return ended


@bp.post("/federation/<name>/backchannel-logout")
def backchannel_logout(name: str) -> ResponseReturnValue:
    upstreams = Upstreams.of()
    config = upstreams.registry(actor="web").get(name) if len(name) <= 63 else None
    if config is None:
        return _refused(name, "unknown_upstream", "unknown identity platform")
    token = request.form.get("logout_token", "")
    if not token or len(token) > MAX_TOKEN:
        return _refused(name, "no_logout_token", "logout_token is missing")
    try:
        claims = upstreams.relying_party(config).verify_logout_token(token)
    except UpstreamRefused as exc:
        return _refused(name, exc.code, "the logout token is not valid")
    # single use: a replayed token (same issuer and jti) ends nothing more
    first = Runtime.of().store.add(
        _JTI + _hash(config.issuer, claims["jti"]), b"1", 2 * LOGOUT_TOKEN_MAX_AGE + 120
    )
    if not first:
        return _refused(name, "logout_token_replayed", "the logout token was already used")
    ended = end_upstream_sessions(config, sub=claims.get("sub"), sid=claims.get("sid"))
    audit_log("web").record(
        "federation.backchannel_logout",
        details={"upstream": config.name, "sessions": ended},
    )
    db().commit()
    response = make_response("", 200)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(backchannel_logout)
