"""The security audit log: a hash-chained table of events (``services``), ``idp audit``."""

from __future__ import annotations

from flask import Flask

from idp.audit.cli import COMMANDS


def init_app(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)
