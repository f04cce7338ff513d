"""Sign in with an upstream OpenID provider (the provincial hall, issue 13 parts 1-2):
upstreams from the settings and the command line (``services``, ``models``), the strict
relying party (``client``), the account mapping rules (``services.LinkService``), the
sign-in method and its pages. ``Upstreams`` (``container``) holds the app-lifetime
parts."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from federation.upstream import logout, views
from federation.upstream.cli import COMMANDS
from federation.upstream.client import ClientKey
from federation.upstream.container import Upstreams
from federation.upstream.signin import UpstreamMethod
from idp.core.runtime import Runtime
from idp.core.signin import SignInMethods


def init_app(
    app: Flask, core: Runtime, *, client_key: Callable[[], ClientKey] | None = None
) -> Upstreams:
    upstreams = Upstreams(core, client_key=client_key)
    upstreams.install(app)
    SignInMethods.of(app).register(UpstreamMethod())
    views.init_app(app)
    logout.init_app(app)
    for command in COMMANDS:
        app.cli.add_command(command)
    return upstreams
