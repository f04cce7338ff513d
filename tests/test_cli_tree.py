"""Every command group is reachable both as ``idp GROUP ...`` and as ``flask --app wsgi
GROUP ...`` (design.md section 8), with the same commands and options."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask

from idp.cli import main
from tests.test_cli import run, run_flask

# idp's own commands that start or set up the service: no app exists yet when they run
SERVICE_COMMANDS = {"init", "serve", "demo"}


def tree(command: click.Command, path: str = "") -> dict[str, list[str]]:
    """Every command under ``command``, by path, with its parameters' names."""
    found = {path: sorted(str(p.name) for p in command.params)} if path else {}
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found.update(tree(sub, f"{path} {name}".strip()))
    return found


def groups(command: click.Group) -> dict[str, click.Command]:
    return {name: sub for name, sub in command.commands.items() if name not in SERVICE_COMMANDS}


def test_idp_and_the_flask_app_offer_the_same_command_tree(app: Flask) -> None:
    ours = groups(main)
    flasks = dict(app.cli.commands)
    assert set(ours) == set(flasks), "a group is registered on one side only"
    for name, command in ours.items():
        assert tree(command, name) == tree(flasks[name], name)
    # the groups the design promises, and the data-key commands inside `keys`
    assert {"users", "clients", "keys", "ids", "registry", "realname", "orgs", "audit"} <= set(ours)
    assert {"keys rotate-data", "keys prune-data", "keys rotate"} <= set(tree(ours["keys"], "keys"))


def test_every_idp_group_answers_through_flask(tmp_path: Path) -> None:
    """One process: ``flask --app wsgi`` lists every group ``idp`` has."""
    env = {"IDP_DATA_DIR": str(tmp_path / "data"), "IDP_LOG_FORMAT": "text"}
    assert run(["init"], env).returncode == 0
    result = run_flask(["--help"], env)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert set(groups(main)) <= listed
