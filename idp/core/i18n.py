"""Locale selection: zh_CN by default, English on request.

Order: ``ui_locales`` (OpenID Connect), the language switch's cookie, Accept-Language,
then the configured default.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, has_request_context, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import Babel, get_locale
from werkzeug.exceptions import HTTPException

from idp.core.navigation import safe_next
from idp.core.runtime import Runtime

SUPPORTED = ("zh_CN", "en")
LOCALE_COOKIE = "idp_locale"
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"

bp = Blueprint("i18n", __name__)


def normalise(tag: str) -> str | None:
    """Map a BCP 47 tag (``zh-CN``, ``zh-Hans``, ``en-GB``...) to a supported locale."""
    tag = tag.strip().replace("_", "-").lower()
    if tag.startswith("zh"):
        return "zh_CN"
    if tag.startswith("en"):
        return "en"
    return None


def _ui_locales() -> str:
    tags = request.args.get("ui_locales", "")
    if not tags and request.method == "POST":
        try:
            tags = request.form.get("ui_locales", "")
        except HTTPException:  # an oversized or unreadable body: its error page needs a locale
            tags = ""
    return tags


def select_locale() -> str:
    if not has_request_context():
        return Runtime.of().settings.default_locale
    for tag in _ui_locales().split():
        chosen = normalise(tag)
        if chosen:
            return chosen
    cookie = normalise(request.cookies.get(LOCALE_COOKIE, ""))
    if cookie:
        return cookie
    for tag, _quality in request.accept_languages:
        chosen = normalise(tag)
        if chosen:
            return chosen
    return Runtime.of().settings.default_locale


@bp.get("/locale")
def switch_locale() -> ResponseReturnValue:
    chosen = normalise(request.args.get("lang", "")) or Runtime.of().settings.default_locale
    response = redirect(safe_next(request.args.get("next")), code=303)
    response.set_cookie(
        LOCALE_COOKIE,
        chosen,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="Lax",
        secure=Runtime.of().settings.is_https,
    )
    return response


def page_lang() -> str:
    """The BCP 47 tag of the page being rendered (for ``<html lang>``)."""
    locale = get_locale()
    return "zh-CN" if locale is not None and locale.language == "zh" else "en"


def init_app(app: Flask) -> None:
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    app.config["BABEL_DEFAULT_LOCALE"] = "en"
    Babel(app, locale_selector=select_locale)
    app.jinja_env.globals["page_lang"] = page_lang
    app.register_blueprint(bp)
