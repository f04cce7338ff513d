"""The elderly mode (长者模式): larger text, stronger contrast, bigger targets, as the
provincial portals offer. A switch in every page's header (a plain link: it works
without JavaScript) sets a cookie for a year; ``display_mode()`` tells the templates,
which mark ``<body class="elderly">`` for the style sheet. A preference, not a secret:
the cookie holds only ``elderly`` or ``standard``."""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, request
from flask.typing import ResponseReturnValue

from idp.core.navigation import safe_next
from idp.core.runtime import Runtime

DISPLAY_COOKIE = "idp_display"
ELDERLY = "elderly"
STANDARD = "standard"
MODES = frozenset({ELDERLY, STANDARD})

bp = Blueprint("display", __name__)


def display_mode() -> str:
    mode = request.cookies.get(DISPLAY_COOKIE, STANDARD)
    return mode if mode in MODES else STANDARD


@bp.get("/display")
def switch_display() -> ResponseReturnValue:
    mode = request.args.get("mode", STANDARD)
    response = redirect(safe_next(request.args.get("next")), code=303)
    response.set_cookie(
        DISPLAY_COOKIE,
        mode if mode in MODES else STANDARD,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="Lax",
        secure=Runtime.of().settings.is_https,
    )
    return response


def init_app(app: Flask) -> None:
    app.jinja_env.globals["display_mode"] = display_mode
    app.register_blueprint(bp)
