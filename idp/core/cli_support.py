"""Shared pieces of the command line: an app context for commands that need one, exit
codes, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar, cast

import click
from flask import has_app_context
from flask.cli import ScriptInfo

F = TypeVar("F", bound=Callable[..., Any])

EXIT_REFUSED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    click.echo(f"idp: {message}", err=True)
    sys.exit(code)


def with_app(command: F) -> F:
    """Run the command inside an app context: ``flask --app``'s when present, else one
    built by the ``ScriptInfo`` the root command put on the click context (``idp``
    builds the app only for the commands that need one)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            return command(*args, **kwargs)
        info = click.get_current_context().find_object(ScriptInfo)
        if info is None:
            fail("this command needs the application; run it through `idp`", EXIT_USAGE)
        with info.load_app().app_context():
            return command(*args, **kwargs)

    return cast(F, wrapper)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=None, default=str))
