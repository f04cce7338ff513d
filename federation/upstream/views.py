"""Upstream sign-in pages.

* ``GET /federation/NAME/login?next=...``: the authorization request to the upstream.
  Its ``state``, ``nonce``, PKCE verifier and ``next`` wait (ten minutes) in the store
  under the hash of the state, bound to this browser by the hash of a random value in an
  HttpOnly cookie (``idp_fed``): the sign-in replaces the session, so the session cannot
  hold them.
* ``GET /federation/NAME/callback``: the state is taken from the store first (single
  use: a replayed callback finds nothing), the browser's cookie must match, then the
  answer is checked (``federation.upstream.client``) and the mapping rules run
  (``federation.upstream.services``). A known account goes to the sign-in flow
  (``flow.proved``), which continues the pending authorization (``next``) or lands on
  ``/account``.
* No account yet: the checked upstream identity waits ten minutes, encrypted, under an
  HttpOnly cookie; ``/federation/new`` offers a new account, or signing in to an
  existing account and linking it at ``/federation/link``.
* ``/account/federation`` lists the account's links and removes them.

Every refusal is a page that says what to do, and a ``federation.signin`` failure in
the audit log with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import TYPE_CHECKING, Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from accounts.people.session import current_user, login_required
from federation.upstream.client import (
    REFUSED,
    UpstreamConfig,
    UpstreamIdentity,
    UpstreamRefused,
)
from federation.upstream.container import Upstreams
from federation.upstream.forms import ActionForm
from federation.upstream.logout import proof_state
from federation.upstream.services import UpstreamError
from federation.upstream.signin import FEDERATION, amr_of
from idp.core.audit.services import FAILURE
from idp.core.navigation import safe_next
from idp.core.runtime import Runtime, audit_log, db
from idp.core.signin import Proof, SignInMethods

if TYPE_CHECKING:
    from accounts.people.models import User

bp = Blueprint("federation_upstream", __name__, template_folder="templates")

BINDING_COOKIE = "idp_fed"
PENDING_COOKIE = "idp_fed_pending"
STATE_TTL_SECONDS = 600
PENDING_TTL_SECONDS = 600
_STATE_KEY = "fed:state:"
_PENDING_KEY = "fed:pending:"
PENDING_CONTEXT = "federation.pending"
MAX_PARAM = 4096


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    return message


UNKNOWN = N_("This identity platform is not known here.")
EXPIRED = N_(
    "This sign-in link has expired or was already used, or it was started in another "
    "browser. Nobody was signed in. Please start again."
)
DISABLED = N_("This account is disabled.")
LAST_WAY = N_(
    "This is the only way to sign in to your account. Set a password before you unlink it."
)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _error_page(message: str, status: int, name: str | None = None) -> Response:
    return make_response(render_template("federation/error.html", error=message, name=name), status)


def _refuse(name: str, exc: UpstreamRefused) -> Response:
    audit_log("web").record(
        "federation.signin", FAILURE, details={"upstream": name[:63], "reason": exc.code[:64]}
    )
    db().commit()
    SignInMethods.of().flow.count(FEDERATION, "failure")
    return _error_page(_(exc.message), exc.status, name)


def _config(name: str) -> UpstreamConfig | None:
    if len(name) > 63:
        return None
    return Upstreams.of().registry(actor="web").get(name)


def _secure() -> bool:
    return Runtime.of().settings.is_https


# -- the round trip ----------------------------------------------------------------------


@bp.get("/federation/<name>/login")
def start(name: str) -> ResponseReturnValue:
    config = _config(name)
    if config is None:
        return _error_page(_(UNKNOWN), 404)
    next_url = safe_next(request.args.get("next"))
    try:
        started = Upstreams.of().relying_party(config).start()
    except UpstreamRefused as exc:
        return _refuse(name, exc)
    binding = request.cookies.get(BINDING_COOKIE, "")
    if not 32 <= len(binding) <= 64:
        binding = secrets.token_urlsafe(32)
    record = {
        "b": _hash(binding),
        "u": config.name,
        "n": started.nonce,
        "v": started.code_verifier,
        "next": next_url,
    }
    Runtime.of().store.set(
        _STATE_KEY + _hash(started.state), json.dumps(record).encode(), STATE_TTL_SECONDS
    )
    response = redirect(started.url)
    response.set_cookie(
        BINDING_COOKIE,
        binding,
        max_age=STATE_TTL_SECONDS,
        path="/federation/",
        secure=_secure(),
        httponly=True,
        samesite="Lax",  # sent on the upstream's top-level redirect back
    )
    return response


def _take_state(name: str) -> dict[str, Any] | None:
    state = request.args.get("state", "")
    if not state or len(state) > MAX_PARAM:
        return None
    raw = Runtime.of().store.take(_STATE_KEY + _hash(state))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    binding = request.cookies.get(BINDING_COOKIE, "")
    if not isinstance(record, dict) or not binding:
        return None
    if not hmac.compare_digest(str(record.get("b", "")), _hash(binding)):
        return None
    if record.get("u") != name:
        return None
    return record


@bp.get("/federation/<name>/callback")
def callback(name: str) -> ResponseReturnValue:
    config = _config(name)
    if config is None:
        return _error_page(_(UNKNOWN), 404)
    record = _take_state(name)
    if record is None:
        return _refuse(name, UpstreamRefused("state_unknown", EXPIRED))
    params = {k: v[:MAX_PARAM] for k, v in request.args.items()}
    try:
        relying_party = Upstreams.of().relying_party(config)
        identity = relying_party.finish(
            params, nonce=str(record["n"]), code_verifier=str(record["v"])
        )
    except UpstreamRefused as exc:
        return _refuse(name, exc)
    next_url = safe_next(str(record.get("next", "")))
    links = Upstreams.of().links(actor="web")
    outcome = links.map(config, identity)
    if outcome.user is None:
        response = redirect(url_for("federation_upstream.new_account", next=next_url))
        _keep_pending(response, config, identity, number_taken=outcome.number_taken)
        return response
    return _signed_in(outcome.user, config, identity, next_url)


def _signed_in(
    user: User, config: UpstreamConfig, identity: UpstreamIdentity, next_url: str
) -> ResponseReturnValue:
    flow = SignInMethods.of().flow
    if user.status != "active":
        audit_log("web").record(
            "federation.signin", FAILURE, subject=user.subject, details={"reason": "disabled"}
        )
        db().commit()
        flow.count(FEDERATION, "failure")
        return _error_page(_(DISABLED), 403)
    proof = Proof(
        method=FEDERATION,
        uid=user.id,
        sub=user.public_id,
        subject=user.subject,
        amr=amr_of(identity.amr),
        state=proof_state(config, identity),
    )
    response = flow.proved(proof, next_url)
    if isinstance(response, BaseResponse):
        response.delete_cookie(BINDING_COOKIE, path="/federation/")
    return response


# -- an upstream identity no account holds yet ------------------------------------------


def _keep_pending(
    response: BaseResponse,
    config: UpstreamConfig,
    identity: UpstreamIdentity,
    *,
    number_taken: bool,
) -> None:
    token = secrets.token_urlsafe(32)
    record = {
        "u": config.name,
        "iss": identity.issuer,
        "sub": identity.subject,
        "claims": dict(identity.claims),
        "amr": list(identity.amr),
        "idt": identity.id_token,
        "taken": number_taken,
    }
    sealed = Runtime.of().keys.cipher.encrypt(json.dumps(record), context=PENDING_CONTEXT)
    Runtime.of().store.set(_PENDING_KEY + _hash(token), sealed.encode(), PENDING_TTL_SECONDS)
    response.set_cookie(
        PENDING_COOKIE,
        token,
        max_age=PENDING_TTL_SECONDS,
        path="/",
        secure=_secure(),
        httponly=True,
        samesite="Lax",
    )


def _pending() -> tuple[UpstreamConfig, UpstreamIdentity, bool] | None:
    token = request.cookies.get(PENDING_COOKIE, "")
    if not token or len(token) > 64:
        return None
    raw = Runtime.of().store.get(_PENDING_KEY + _hash(token))
    if raw is None:
        return None
    try:
        record = json.loads(Runtime.of().keys.cipher.decrypt(raw.decode(), context=PENDING_CONTEXT))
        config = _config(str(record["u"]))
        identity = UpstreamIdentity(
            issuer=str(record["iss"]),
            subject=str(record["sub"]),
            claims=dict(record["claims"]),
            amr=tuple(str(v) for v in record["amr"]),
            id_token=str(record.get("idt", "")),
        )
        taken = bool(record["taken"])
    except Exception:  # noqa: BLE001 - a record we cannot read is no record
        return None
    if config is None or config.issuer != identity.issuer:
        return None
    return config, identity, taken


def _forget_pending(response: BaseResponse) -> None:
    token = request.cookies.get(PENDING_COOKIE, "")
    if token and len(token) <= 64:
        Runtime.of().store.delete(_PENDING_KEY + _hash(token))
    response.delete_cookie(PENDING_COOKIE, path="/")


def _start_again() -> Response:
    return _error_page(_(EXPIRED), 400)


@bp.route("/federation/new", methods=["GET", "POST"])
def new_account() -> ResponseReturnValue:
    """Create an account for the upstream identity, or go and sign in to link it."""
    next_url = safe_next(request.values.get("next"))
    pending = _pending()
    if pending is None:
        return _start_again()
    config, identity, taken = pending
    form = ActionForm()
    form.next.data = next_url
    link_url = url_for(
        "login.login", next=url_for("federation_upstream.link_account", next=next_url)
    )
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return make_response(
            render_template(
                "federation/new.html",
                form=form,
                name=config.label,
                taken=taken,
                link_url=link_url,
                next_url=next_url,
            ),
            status,
        )
    links = Upstreams.of().links(actor="web")
    try:
        user = links.create_account(config, identity, number_taken=taken)
    except UpstreamError:
        # the upstream account was linked meanwhile (another tab): sign that one in
        outcome = links.map(config, identity)
        if outcome.user is None:
            return _error_page(_(REFUSED), 409)
        user = outcome.user
    response = _signed_in(user, config, identity, next_url)
    if isinstance(response, BaseResponse):
        _forget_pending(response)
    return response


@bp.route("/federation/link", methods=["GET", "POST"])
def link_account() -> ResponseReturnValue:
    """Link the pending upstream identity to the account signed in now."""
    next_url = safe_next(request.values.get("next"))
    pending = _pending()
    if pending is None:
        return _start_again()
    config, identity, _taken = pending
    user = current_user()
    if user is None:
        return redirect(
            url_for("login.login", next=url_for("federation_upstream.link_account", next=next_url))
        )
    form = ActionForm()
    form.next.data = next_url
    if not form.validate_on_submit():
        return make_response(
            render_template("federation/link.html", form=form, name=config.label, next_url=next_url)
        )
    try:
        Upstreams.of().links(actor="web").link(user, config, identity)
    except UpstreamError:
        return _error_page(
            _("This account of %(name)s is linked to another account.", name=config.label), 409
        )
    flash(_("You can now sign in with %(name)s.", name=config.label), "success")
    response = redirect(next_url)
    _forget_pending(response)
    return response


# -- the account page's links ------------------------------------------------------------


@bp.get("/account/federation")
@login_required
def account_links() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    links = Upstreams.of().links().links(user)
    labels = Upstreams.of().labels()
    return make_response(
        render_template("federation/links.html", links=links, labels=labels, form=ActionForm())
    )


@bp.post("/account/federation/<int:link_id>/unlink")
@login_required
def account_unlink(link_id: int) -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        removed = Upstreams.of().links(actor="web").unlink(user, link_id)
    except UpstreamError:
        flash(_(LAST_WAY), "error")
        return redirect(url_for("federation_upstream.account_links"))
    if not removed:
        abort(404)
    flash(_("The identity platform no longer signs in to your account."), "success")
    return redirect(url_for("federation_upstream.account_links"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
