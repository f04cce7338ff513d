"""Account mutual recognition with the provincial hall and other peers (issue 13).

Built so far: upstream OIDC sign-in and account mapping (``federation.upstream``) and
SCIM 2.0 provisioning (``federation.scim``: RFC 7643/7644 ``Users`` at ``/scim/v2/``).
``Federation`` (``federation.container``) holds SCIM's app-lifetime parts; the provider
hands it the access-token check (``BearerCheck``), since this package sits below the
protocol layer, and the key the upstream client signs its client assertions with.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from federation import upstream
from federation.container import BearerCheck, Federation
from federation.scim import views as scim_views
from federation.upstream.cli import COMMANDS as UPSTREAM_COMMANDS
from federation.upstream.client import ClientKey
from idp.core.runtime import Runtime

COMMANDS = (*UPSTREAM_COMMANDS,)


def init_app(
    app: Flask,
    core: Runtime,
    *,
    bearer: BearerCheck,
    client_key: Callable[[], ClientKey] | None = None,
) -> Federation:
    federation = Federation(core, bearer)
    federation.install(app)
    scim_views.init_app(app)
    upstream.init_app(app, core, client_key=client_key)
    return federation
