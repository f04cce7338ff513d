"""Operations endpoints: ``/healthz`` (the process answers) and ``/readyz`` (its
dependencies answer)."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, jsonify

from idp.core.db import DatabaseUnavailable
from idp.core.runtime import Runtime
from idp.core.store import StoreUnavailable

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    rt = Runtime.of()
    checks = {}
    try:
        rt.database.check()
        checks["database"] = "ok"
    except DatabaseUnavailable as exc:
        log.error("readiness: %s", exc)
        checks["database"] = "unavailable"
    try:
        rt.store.ping()
        checks["store"] = "ok"
    except StoreUnavailable as exc:
        log.error("readiness: %s", exc)
        checks["store"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    response = jsonify(status="ready" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
