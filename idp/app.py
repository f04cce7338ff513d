"""The composition root: builds one app, in a fixed order, checking as it goes.

Each package has one ``init_app`` that builds its app-lifetime services (a typed
``Component`` on the app), registers its blueprints and its click groups; this module
calls them in order and hands them what they depend on. ``Adapters`` are the external
services a test (or an operator embedding the service) can replace.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from flask_wtf.csrf import CSRFProtect

import accounts
import federation
import idp.models  # noqa: F401 - every model is mapped before the first query
import pki
from accounts.adapters.face import FaceVerifier
from accounts.adapters.registry import Registry
from accounts.adapters.sms import SmsGateway
from accounts.container import AccountAdapters
from config import Settings, load_settings
from idp import login, oauth
from idp.core import display, i18n, metrics, ops, web
from idp.core.audit.cli import COMMANDS as AUDIT_COMMANDS
from idp.core.clock import Clock, SystemClock
from idp.core.db import Database, DatabaseUnavailable
from idp.core.keys import KeysMissing, load_keys
from idp.core.logs import configure_logging
from idp.core.runtime import Runtime
from idp.core.runtime import init_app as init_runtime
from idp.core.schema import pending_migrations
from idp.core.sessions import StoreSessionInterface, refuse_without_store
from idp.core.store import Store, StoreUnavailable, build_store
from idp.oauth import lean
from idp.oauth.client_tokens import ClientTokens, UpstreamClientKey
from idp.oauth.server import OAuthRuntime

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent


class StartupError(Exception):
    """The service cannot start; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class Adapters:
    """Replacements for the external services; None means "as the settings say"."""

    registry: Registry | None = None
    face: FaceVerifier | None = None
    sms: SmsGateway | None = None


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    database: Database | None = None,
    adapters: Adapters | None = None,
    background: bool = False,
) -> Flask:
    """Build the app. ``background`` starts this worker's background threads (the
    back-channel logout deliverer): servers want them, tests and commands do not."""
    settings = settings or load_settings(os.environ)
    configure_logging(settings.log_level, settings.log_format)

    try:
        keys = load_keys(settings)
    except KeysMissing as exc:
        raise StartupError(str(exc)) from None
    database = database or Database.from_settings(settings)
    try:
        database.check()
    except DatabaseUnavailable as exc:
        raise StartupError(str(exc)) from None
    if pending_migrations(database.engine):
        raise StartupError("the database schema is not up to date; run `idp init`")
    store = store or build_store(
        settings.redis_url, data_dir=settings.data_dir, namespace=settings.redis_namespace
    )
    try:
        store.ping()
    except StoreUnavailable as exc:
        raise StartupError(str(exc)) from None

    app = Flask(
        "idp",
        root_path=str(PACKAGE_DIR),
        template_folder="templates",
        static_folder="static",
    )
    app.config.update(
        SECRET_KEY=keys.secrets.subkey("flask").hex(),
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_request_bytes,
        WTF_CSRF_TIME_LIMIT=3600,
        WTF_CSRF_SSL_STRICT=settings.is_https,
        PREFERRED_URL_SCHEME="https" if settings.is_https else "http",
        IDP_REGISTRATION_ENABLED=settings.registration_enabled,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    clock = clock or SystemClock()
    core = Runtime(settings=settings, database=database, store=store, keys=keys, clock=clock)
    init_runtime(app, core)
    app.session_interface = StoreSessionInterface(store, settings, clock)
    app.before_request(refuse_without_store)
    web.init_app(app)
    i18n.init_app(app)
    display.init_app(app)
    CSRFProtect(app)
    metrics.init_app(app)
    ops.init_app(app)

    adapters = adapters or Adapters()
    for command in AUDIT_COMMANDS:
        app.cli.add_command(command)
    login.init_app(app)
    accounts.init_app(
        app,
        core,
        AccountAdapters(registry=adapters.registry, face=adapters.face, sms=adapters.sms),
    )
    pki.init_app(app, core, background=background)
    oauth.init_app(app, core, background=background)
    # below the protocol layer, federation is handed the provider's token check and the
    # key its upstream client signs client assertions with
    provider = OAuthRuntime.of(app)
    federation.init_app(
        app, core, bearer=ClientTokens(provider), client_key=UpstreamClientKey(provider)
    )
    # the WSGI stack, innermost first: the lean token endpoints in front of Flask (not
    # in idp.oauth.init_app: `idp` imports idp.oauth for its commands and must not load
    # prometheus_client, which lean's metrics import, before `serve` sets it up), then
    # the trusted proxies' headers
    lean.init_app(app)
    web.trust_proxies(app, settings.trusted_proxy_count)

    return app
