"""Certificate sign-in pages and the bridge's CRL.

* ``/pki/bridge.crl``: the bridge's CRL, named in every cross-certificate's CRL
  distribution point.
* ``GET /login/certificate`` draws the form with a one-time challenge (hidden field
  ``challenge``, bound to this browser's session); ``POST`` takes ``challenge``,
  ``certificate`` (PEM) and ``signature`` (base64). The challenge is consumed before
  anything else is looked at, so a replay fails whatever else it carries.
* ``GET /login/certificate/tls``: the client certificate the TLS-terminating proxy
  forwarded (``pki.mtls``), trusted only from the configured proxy addresses.
* A valid certificate that no account holds yet is kept for ten minutes in the store
  (under a random token in an HttpOnly cookie, since signing in replaces the session):
  ``/login/certificate/new`` creates an account for it, ``/login/certificate/bind``
  links it to the account the person then signs in to.
* ``/account/certificates`` lists the account's certificates and unbinds them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
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
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from accounts.container import Accounts
from accounts.errors import AccountError
from accounts.people.session import current_user, login_required
from idp.core.navigation import safe_next
from idp.core.principal import ActingFor
from idp.core.runtime import Runtime, db
from idp.core.signin import Proof, SignInMethods
from pki.certificates import CertificateRefused, CertificateService, CheckedCertificate
from pki.challenge import ChallengeRefused, verify_challenge_signature
from pki.container import Pki
from pki.forms import ActionForm, CertificateLoginForm, NewAccountForm
from pki.mtls import ForwardedCertificateRefused, forwarded_certificate, proxy_networks
from pki.reasons import Reason
from pki.services import CRL_PATH, PkiError
from pki.signin import CERTIFICATE, CHALLENGE_AMR, TLS_AMR

if TYPE_CHECKING:
    from accounts.people.models import User

bp = Blueprint("pki", __name__, template_folder="templates")
log = logging.getLogger(__name__)


def say(text: Any) -> Any:
    """A refusal reason in the reader's language (``pki.reasons.Reason``), its named
    parts too; any other value as it is."""
    if not isinstance(text, Reason):
        return text
    translated: str = _(text.msgid, **{key: say(value) for key, value in text.params.items()})
    return translated


def _refusal(exc: CertificateRefused | AccountError) -> str:
    """The refusal's message (a msgid) and parameters, said in the reader's language."""
    translated: str = _(exc.message, **{key: say(value) for key, value in exc.params.items()})
    return translated


PENDING_COOKIE = "idp_pki_pending"
PENDING_TTL_SECONDS = 600
_PENDING_KEY = "pki:pending:"
_BINDING_KEY = "pki_cb"  # the session's random id the challenges are bound to


@bp.get(CRL_PATH)
def bridge_crl() -> Response:
    try:
        der = Pki.of().service(actor="web").crl()
        db().commit()
    except PkiError:
        return Response("no bridge CA\n", status=404, mimetype="text/plain")
    response = Response(der, mimetype="application/pkix-crl")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# -- challenge signing -------------------------------------------------------------------


def _session_binding() -> str:
    binding = session.get(_BINDING_KEY)
    if not isinstance(binding, str) or not binding:
        binding = secrets.token_urlsafe(24)
        session[_BINDING_KEY] = binding
    return binding


def _login_page(
    form: CertificateLoginForm, next_url: str, status: int, error: str | None = None
) -> Response:
    form.challenge.data = Pki.of().challenges.issue(_session_binding())
    form.next.data = next_url
    # the PEM and the signature are never echoed back into a new form
    form.signature.data = ""
    return make_response(
        render_template(
            "pki/login.html",
            form=form,
            next_url=next_url,
            error=error,
            challenge=form.challenge.data,
        ),
        status,
    )


@bp.route("/login/certificate", methods=["GET", "POST"])
def certificate_login() -> ResponseReturnValue:
    next_url = safe_next(request.values.get("next"))
    form = CertificateLoginForm()
    if request.method == "GET":
        return _login_page(form, next_url, 200)
    if not form.validate_on_submit():
        return _login_page(form, next_url, 400)
    flow = SignInMethods.of().flow
    try:
        # first: a challenge is gone after its first use, whatever else the POST holds
        Pki.of().challenges.consume(form.challenge.data or "", _session_binding())
        certificate = (form.certificate.data or "").encode()
        verify_challenge_signature(
            certificate, form.challenge.data or "", form.signature.data or ""
        )
        checked = Pki.of().certificates(actor="web").check(certificate)
    except ChallengeRefused as exc:
        flow.count(CERTIFICATE, "failure")
        return _login_page(form, next_url, 401, _(exc.reason))
    except CertificateRefused as exc:
        flow.count(CERTIFICATE, "failure")
        return _login_page(form, next_url, 401, _refusal(exc))
    return _signed_in_or_pending(checked, CHALLENGE_AMR, next_url)


@bp.get("/login/certificate/tls")
def certificate_tls() -> ResponseReturnValue:
    """The certificate the proxy verified in the TLS handshake (possession proved
    there), validated through the bridge like any other."""
    next_url = safe_next(request.values.get("next"))
    flow = SignInMethods.of().flow
    settings = Runtime.of().settings
    try:
        certificate = forwarded_certificate(
            request.environ,
            header=settings.client_cert_header,
            proxies=proxy_networks(settings.client_cert_proxies),
            trusted_proxy_count=settings.trusted_proxy_count,
        )
    except ForwardedCertificateRefused as exc:
        log.warning("forwarded client certificate refused from %s: %s", exc.peer, exc.reason)
        flow.count(CERTIFICATE, "failure")
        return _error_page(_("The client certificate cannot be used here."), 403)
    if certificate is None:
        return _error_page(
            _("No client certificate was presented. Insert your USB key and try again."), 401
        )
    try:
        checked = Pki.of().certificates(actor="web").check(certificate)
    except CertificateRefused as exc:
        flow.count(CERTIFICATE, "failure")
        return _error_page(_refusal(exc), 401)
    return _signed_in_or_pending(checked, TLS_AMR, next_url)


def _error_page(message: str, status: int) -> Response:
    return make_response(render_template("pki/error.html", error=message), status)


def _signed_in_or_pending(
    checked: CheckedCertificate, amr: tuple[str, ...], next_url: str
) -> ResponseReturnValue:
    service = Pki.of().certificates(actor="web")
    user = service.holder(checked)
    flow = SignInMethods.of().flow
    if user is None:
        response = redirect(url_for("pki.certificate_new", next=next_url))
        _keep_pending(response, checked, amr)
        return response
    if user.status != "active":
        flow.count(CERTIFICATE, "failure")
        return _error_page(_("This account is disabled."), 403)
    try:
        service.signed_in(user, checked)
    except CertificateRefused as exc:
        flow.count(CERTIFICATE, "failure")
        return _error_page(_refusal(exc), 403)
    return flow.proved(_proof(service, user, checked, amr), next_url)


def _proof(
    service: CertificateService, user: User, checked: CheckedCertificate, amr: tuple[str, ...]
) -> Proof:
    """What the certificate proved: the account, and for an enterprise certificate the
    organisation, which the session then acts for as the subject (issue 12: with an
    enterprise certificate alone the subject is the organisation)."""
    acting_for = None
    authority = service.organisation_authority(user, checked)
    if authority is not None:
        organisation, authorisation = authority
        acting_for = ActingFor(organisation.public_id, authorisation.public_id, as_subject=True)
    return Proof(
        method=CERTIFICATE,
        uid=user.id,
        sub=user.public_id,
        subject=user.subject,
        amr=amr,
        acting_for=acting_for,
    )


# -- a certificate no account holds yet -------------------------------------------------


def _pending_key(token: str) -> str:
    return _PENDING_KEY + hashlib.sha256(token.encode()).hexdigest()


def _keep_pending(
    response: BaseResponse, checked: CheckedCertificate, amr: tuple[str, ...]
) -> None:
    token = secrets.token_urlsafe(32)
    record = {"der": base64.b64encode(checked.der).decode(), "amr": list(amr)}
    Runtime.of().store.set(_pending_key(token), json.dumps(record).encode(), PENDING_TTL_SECONDS)
    response.set_cookie(
        PENDING_COOKIE,
        token,
        max_age=PENDING_TTL_SECONDS,
        path="/",
        secure=Runtime.of().settings.is_https,
        httponly=True,
        samesite="Lax",
    )


def _pending() -> tuple[CheckedCertificate, tuple[str, ...]] | None:
    """The pending certificate, checked again (it may have been revoked since)."""
    token = request.cookies.get(PENDING_COOKIE, "")
    if not token or len(token) > 64:
        return None
    raw = Runtime.of().store.get(_pending_key(token))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        der = base64.b64decode(record["der"])
        amr = tuple(str(value) for value in record["amr"])
    except (ValueError, KeyError, TypeError):
        return None
    try:
        return Pki.of().certificates(actor="web").check(der), amr
    except CertificateRefused:
        return None


def _forget_pending(response: BaseResponse) -> None:
    token = request.cookies.get(PENDING_COOKIE, "")
    if token:
        Runtime.of().store.delete(_pending_key(token))
    response.delete_cookie(PENDING_COOKIE, path="/")


def _start_again() -> BaseResponse:
    flash(
        _("The certificate sign-in has expired. Please sign in with your certificate again."),
        "info",
    )
    response = redirect(url_for("pki.certificate_login"))
    response.delete_cookie(PENDING_COOKIE, path="/")
    return response


@bp.route("/login/certificate/new", methods=["GET", "POST"])
def certificate_new() -> ResponseReturnValue:
    """Create an account for the certificate, or go and sign in to link it."""
    next_url = safe_next(request.values.get("next"))
    pending = _pending()
    if pending is None:
        return _start_again()
    checked, amr = pending
    form = NewAccountForm()
    form.next.data = next_url
    context = {"form": form, "checked": checked, "next_url": next_url}
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return make_response(render_template("pki/new.html", **context), status)
    accounts = Accounts.of().account_service(actor="web")
    try:
        user = accounts.register(form.username.data or "", form.password.data or "")
    except AccountError as exc:
        return make_response(render_template("pki/new.html", error=_refusal(exc), **context), 400)
    service = Pki.of().certificates(actor="web")
    try:
        service.bind(user, checked)
    except CertificateRefused as exc:
        return make_response(render_template("pki/new.html", error=_refusal(exc), **context), 403)
    response = SignInMethods.of().flow.proved(_proof(service, user, checked, amr), next_url)
    assert isinstance(response, BaseResponse)
    _forget_pending(response)
    return response


@bp.route("/login/certificate/bind", methods=["GET", "POST"])
def certificate_bind() -> ResponseReturnValue:
    """Link the pending certificate to the account signed in now."""
    pending = _pending()
    if pending is None:
        return _start_again()
    checked, _amr = pending
    user = current_user()
    if user is None:
        return redirect(url_for("login.login", next=url_for("pki.certificate_bind")))
    form = ActionForm()
    if not form.validate_on_submit():
        return make_response(render_template("pki/bind.html", form=form, checked=checked))
    try:
        Pki.of().certificates(actor="web").bind(user, checked)
    except CertificateRefused as exc:
        return make_response(
            render_template("pki/bind.html", form=form, checked=checked, error=_refusal(exc)),
            403,
        )
    flash(_("Your certificate is linked to your account."), "success")
    response = redirect(url_for("pki.account_certificates"))
    _forget_pending(response)
    return response


# -- the account page's certificates ---------------------------------------------------


@bp.get("/account/certificates")
@login_required
def account_certificates() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    bindings = Pki.of().certificates().bindings_of(user)
    return make_response(
        render_template("pki/certificates.html", bindings=bindings, form=ActionForm())
    )


@bp.post("/account/certificates/<int:binding_id>/unbind")
@login_required
def account_certificate_unbind(binding_id: int) -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    if not Pki.of().certificates(actor="web").unbind(user, binding_id):
        abort(404)
    flash(_("The certificate no longer signs in to your account."), "success")
    return redirect(url_for("pki.account_certificates"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
