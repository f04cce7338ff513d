"""People and their credentials: registration, passwords, TOTP, recovery codes, pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from accounts import cli, realname_views, staff, views  # realname_views adds to views.bp

    views.init_app(app)
    realname_views.init_app(app)
    staff.init_app(app)
    app.cli.add_command(cli.users)
