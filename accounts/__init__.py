"""People and their credentials: registration, passwords, TOTP, recovery codes, pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from accounts import cli, staff, views

    views.init_app(app)
    staff.init_app(app)
    app.cli.add_command(cli.users)
