"""The README stays true: every setting and every command is documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click

from config.sections import SECTIONS
from config.settings import Settings, build_settings, env_name
from idp.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_settings_table() -> None:
    missing = [
        env_name(name) for name in Settings.model_fields if f"`{env_name(name)}`" not in README
    ]
    assert missing == []


def test_every_key_of_a_list_is_in_its_table() -> None:
    for field, model in SECTIONS.items():
        heading = f"`[[{field}]]` (`{env_name(field)}`):"
        assert heading in README
        table = README.split(heading, 1)[1].split("\n\n", 2)[1]
        missing = [key for key in model.model_fields if f"| `{key}` |" not in table]
        assert missing == [], field


def test_the_example_of_the_lists_is_valid() -> None:
    section = README.split("### Lists", 1)[1].split("\n## ", 1)[0]
    example = tomllib.loads(section.split("```toml", 1)[1].split("```", 1)[0])
    settings = build_settings(example)
    assert [len(getattr(settings, field)) for field in SECTIONS] == [1, 1, 1]


def test_every_command_is_in_the_command_table() -> None:
    def walk(group: click.Group, prefix: str) -> list[str]:
        names = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                names += walk(command, f"{prefix}{name} ")
            else:
                names.append(f"{prefix}{name}")
        return names

    missing = [name for name in walk(main, "idp ") if f"`{name}" not in README]
    assert missing == []


def test_the_quickstart_has_two_commands() -> None:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert [line.split()[0] for line in commands] == ["scripts/demo", "scripts/test"]
    for command in ("scripts/demo", "scripts/test"):
        assert (Path(__file__).resolve().parents[1] / command).stat().st_mode & 0o111


def test_every_screenshot_the_readme_shows_is_there() -> None:
    root = Path(__file__).resolve().parents[1]
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert shown, "the README shows no screenshot"
    missing = [path for path in shown if not (root / path).is_file()]
    assert missing == []
