"""Shared pieces of the command line: an app for commands that need one, JSON output."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar, cast

import click
from flask import Flask, current_app, has_app_context

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    click.echo(f"idp: {message}", err=True)
    sys.exit(code)


def build_cli_app() -> Flask:
    """The app for a command, with start-up errors as one line instead of a traceback."""
    from config import SettingsError, load_settings
    from idp.app import StartupError, create_app

    # The embedded-mode banner is for servers; commands stay quiet.
    logging.getLogger("idp.core.store").setLevel(logging.ERROR)
    try:
        return create_app(load_settings(os.environ))
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)
    except StartupError as exc:
        fail(str(exc))


def with_app(command: F) -> F:
    """Run the command inside an app context (reusing ``flask --app``'s when present)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return command(*args, **kwargs)
        app = build_cli_app()
        with app.app_context():
            return command(*args, **kwargs)

    return cast(F, wrapper)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=None, default=str))


def app() -> Flask:
    return current_app
