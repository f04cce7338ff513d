"""The ``idp`` command as an operator runs it (a separate process each time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import run_idp
from tests.support import STRONG_PASSWORD


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``idp ARGS`` in a process of its own (forked from one that imported ``idp.cli``
    already: tests/cli_process.py), with ``env`` for its ``IDP_*`` variables."""
    return run_idp(args, env)


def run_flask(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``flask --app wsgi ARGS`` from the repository's root, as an operator runs it."""
    flask = str(Path(sys.executable).with_name("flask"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return subprocess.run(
        [flask, "--app", "wsgi", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"IDP_DATA_DIR": str(tmp_path / "data"), "IDP_LOG_FORMAT": "text"}


def test_init_users_and_audit(env: dict[str, str]) -> None:
    first = run(["init"], env)
    assert first.returncode == 0, first.stderr
    assert "secret.key" in first.stdout
    again = run(["init", "--json"], env)
    assert json.loads(again.stdout)["created"] == []

    created = run(
        ["users", "create", "--username", "bob", "--password", STRONG_PASSWORD, "--json"], env
    )
    assert created.returncode == 0, created.stderr
    user = json.loads(created.stdout)
    assert user["username"] == "bob"
    assert "password" not in created.stdout

    duplicate = run(["users", "create", "--username", "BOB", "--password", STRONG_PASSWORD], env)
    assert duplicate.returncode == 1
    assert "taken" in duplicate.stderr

    weak = run(["users", "create", "--username", "carol", "--password", "password"], env)
    assert weak.returncode == 1
    assert "commonly used" in weak.stderr

    listed = run(["users", "list", "--json"], env)
    assert [entry["username"] for entry in json.loads(listed.stdout)] == ["bob"]

    assert run(["users", "disable", "bob"], env).returncode == 0
    listed = run(["users", "list", "--json"], env)
    assert json.loads(listed.stdout)[0]["status"] == "disabled"
    assert run(["users", "enable", "bob"], env).returncode == 0
    assert run(["users", "disable", "nobody"], env).returncode == 1

    verified = run(["audit", "verify", "--json"], env)
    assert verified.returncode == 0
    assert json.loads(verified.stdout) == {"ok": True, "checked": 3, "problems": []}


def test_audit_verify_fails_after_tampering(env: dict[str, str]) -> None:
    import sqlite3

    run(["init"], env)
    run(["users", "create", "--username", "bob", "--password", STRONG_PASSWORD], env)
    database = Path(env["IDP_DATA_DIR"]) / "idp.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE audit_events SET actor = 'someone else'")
    result = run(["audit", "verify"], env)
    assert result.returncode == 1
    assert "altered" in result.stderr


def test_invalid_settings_stop_with_the_setting_named(env: dict[str, str]) -> None:
    result = run(["users", "list"], {**env, "IDP_WORKERS": "-3"})
    assert result.returncode == 2
    assert "IDP_WORKERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_one_line_without_the_password(env: dict[str, str]) -> None:
    url = "postgresql+psycopg://idp:hunter2secret@127.0.0.1:1/idp"
    result = run(["init"], {**env, "IDP_DATABASE_URL": url})
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "hunter2secret" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_redis_is_one_line_without_the_password(env: dict[str, str]) -> None:
    run(["init"], env)
    result = run(
        ["serve", "--port", "1"], {**env, "IDP_REDIS_URL": "redis://:hunter2secret@127.0.0.1:1/0"}
    )
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "hunter2secret" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_several_workers_need_a_shared_store(env: dict[str, str]) -> None:
    run(["init"], env)
    result = run(["serve", "--workers", "3", "--port", "1"], env)
    assert result.returncode == 1
    assert "IDP_REDIS_URL" in result.stderr


def test_commands_before_init_say_what_to_do(env: dict[str, str]) -> None:
    result = run(["users", "list"], env)
    assert result.returncode == 1
    assert "idp init" in result.stderr


def test_the_cli_module_leaves_prometheus_unconfigured() -> None:
    """`serve` must set PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported."""
    code = "import sys, idp.cli; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_flask_cli_reaches_the_same_commands(env: dict[str, str]) -> None:
    run(["init"], env)
    result = run_flask(["users", "list", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_registry_import_and_realname_commands(env: dict[str, str], tmp_path: Path) -> None:
    assert run(["init"], env).returncode == 0
    created = run(["users", "create", "--username", "dora", "--password", STRONG_PASSWORD], env)
    assert created.returncode == 0, created.stderr
    good = tmp_path / "people.csv"
    good.write_text("number,name\n11010519491231002x,王小丽\n", encoding="utf-8")
    imported = run(["registry", "import", "--kind", "person", str(good)], env)
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 person records" in imported.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("number,name\n12345,somebody\n", encoding="utf-8")
    refused = run(["registry", "import", "--kind", "person", str(bad)], env)
    assert refused.returncode == 1
    assert "nothing imported: line 2" in refused.stderr
    status = run(["realname", "status", "dora", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["level"] == 1
    lowered = run(["realname", "lower", "dora", "--to", "2", "--reason", "test"], env)
    assert lowered.returncode == 0, lowered.stderr
    assert run(["realname", "status", "nobody"], env).returncode == 1
    assert run(["realname", "lower", "dora", "--to", "9", "--reason", "x"], env).returncode == 2
