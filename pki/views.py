"""``/pki/bridge.crl``: the bridge's CRL, named in every cross-certificate's CRL
distribution point."""

from __future__ import annotations

from flask import Blueprint, Flask, Response

from idp.core.runtime import db
from pki.container import Pki
from pki.services import CRL_PATH, PkiError

bp = Blueprint("pki", __name__)


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


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
