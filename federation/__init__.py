"""Account mutual recognition with the provincial hall (issue 13): upstream OIDC
login and account mapping (``federation.upstream``); SCIM provisioning follows."""

from __future__ import annotations

from flask import Flask

from federation import upstream
from federation.upstream.cli import COMMANDS as UPSTREAM_COMMANDS
from idp.core.runtime import Runtime

COMMANDS = (*UPSTREAM_COMMANDS,)


def init_app(app: Flask, core: Runtime) -> None:
    upstream.init_app(app, core)
