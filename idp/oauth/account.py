"""The account page's "connected services": what each service may see, withdrawable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import (
    Blueprint,
    Flask,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from accounts.people.session import current_user, login_required
from idp.core.runtime import audit_log, db
from idp.oauth.server import OAuthRuntime

bp = Blueprint("oauth_account", __name__, template_folder="templates")


@dataclass(frozen=True)
class ConnectedService:
    client_id: str
    name: str
    scope: str
    granted_at: datetime


@bp.get("/account/services")
@login_required
def services() -> ResponseReturnValue:
    user = current_user()
    assert user is not None
    provider = OAuthRuntime.of()
    registry = provider.clients
    entries: dict[str, ConnectedService] = {}
    for consent in provider.consents().for_user(user.id):
        client = registry.get(consent.client_id)
        name = client.name if client else consent.client_id
        entries[consent.client_id] = ConnectedService(
            consent.client_id, name, consent.scope, consent.granted_at
        )
    # services that keep access while the user is away (offline_access), consented or
    # first-party: they can be stopped here too
    now = provider.core.clock.now()
    for grant in provider.tokens().active_grants(user_id=user.id):
        if "offline_access" not in grant.scope.split() or grant.expires_at <= now:
            continue
        if grant.client_id not in entries:
            client = registry.get(grant.client_id)
            name = client.name if client else grant.client_id
            entries[grant.client_id] = ConnectedService(
                grant.client_id, name, grant.scope, grant.created_at
            )
    return make_response(
        render_template("oauth/services.html", services=list(entries.values()), form=FlaskForm())
    )


@bp.post("/account/services/revoke")
@login_required
def revoke_service() -> ResponseReturnValue:
    """Withdraw consent and end every grant (refresh and access tokens) of the service."""
    user = current_user()
    assert user is not None
    form = FlaskForm()
    client_id = request.form.get("client_id", "")[:100]
    if form.validate_on_submit() and client_id:
        provider = OAuthRuntime.of()
        provider.consents().revoke(user.id, client_id)
        tokens = provider.tokens()
        tokens.revoke_grants(
            tokens.active_grants(user_id=user.id, client_id=client_id), "consent_withdrawn"
        )
        audit_log().record(
            "consent.withdraw", subject=user.subject, details={"client_id": client_id}
        )
        db().commit()
        flash(_("Access withdrawn."), "success")
    return redirect(url_for("oauth_account.services"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
