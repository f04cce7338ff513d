"""``idp users staff``, ``idp realname counter-verify``, ``idp orgs ...`` and
``idp keys rotate-data|prune-data`` as an operator runs them (a process each time)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.servers import idp_batch
from tests.support import STRONG_PASSWORD
from tests.test_cli import run

PERSON = ("11010519491231002X", "王小丽")
ORGANISATION = ("91110000600037341L", "东莞示例科技有限公司")
DEPARTMENT = "东莞市政务服务数据管理局"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {"IDP_DATA_DIR": str(tmp_path / "data"), "IDP_LOG_FORMAT": "text"}
    # the set-up in one process; the commands under test each run as their own
    users = (
        ["users", "create", "--username", name, "--password", STRONG_PASSWORD]
        for name in ("dora", "clerk", "eve")
    )
    idp_batch([["init"], *users], environment)
    return environment


# about twenty `idp` processes in a row (two seconds each to start): under a loaded
# parallel run that nears the default 120 s
@pytest.mark.timeout(300)
def test_staff_and_counter_verification(env: dict[str, str]) -> None:
    appointed = run(["users", "staff", "clerk", "--department", DEPARTMENT], env)
    assert appointed.returncode == 0, appointed.stderr
    assert DEPARTMENT in appointed.stdout
    assert run(["users", "staff", "clerk"], env).returncode == 2  # neither option
    both = ["users", "staff", "clerk", "--department", "x", "--revoke"]
    assert run(both, env).returncode == 2
    assert run(["users", "staff", "nobody", "--department", "x"], env).returncode == 1

    verify = ["realname", "counter-verify", "dora", "--name", PERSON[1], "--number", PERSON[0]]
    done = run([*verify, "--staff", "clerk", "--reference", "T-1", "--json"], env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["level"], answer["document_number"]) == (5, "110***********002X")
    assert answer["source"] == f"counter:{DEPARTMENT}"
    assert answer["actor"].startswith("staff:")
    assert PERSON[0] not in done.stdout

    not_staff = run([*verify, "--staff", "eve"], env)
    assert not_staff.returncode == 1
    assert "Only government staff" in not_staff.stderr
    person = ["--name", PERSON[1], "--number", PERSON[0]]
    own = run(["realname", "counter-verify", "clerk", *person, "--staff", "clerk"], env)
    assert own.returncode == 1
    assert "their own account" in own.stderr
    taken = run(["realname", "counter-verify", "eve", *person, "--staff", "clerk"], env)
    assert taken.returncode == 1
    assert "already verified for another account" in taken.stderr
    assert "dora" not in taken.stderr

    revoked = run(["users", "staff", "clerk", "--revoke"], env)
    assert revoked.returncode == 0, revoked.stderr
    assert run(["users", "staff", "clerk", "--revoke"], env).returncode == 1
    assert run([*verify, "--staff", "clerk"], env).returncode == 1
    tail = run(["audit", "tail", "--limit", "50"], env)
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    staff_events = [(e["event"], e["actor"]) for e in events if e["event"].startswith("staff.")]
    assert sorted(staff_events) == [("staff.appoint", "cli"), ("staff.revoke", "cli")]
    assert PERSON[0] not in tail.stdout
    assert PERSON[1] not in tail.stdout


def test_organisations(env: dict[str, str], tmp_path: Path) -> None:
    records = tmp_path / "orgs.csv"
    records.write_text(f"number,name\n{ORGANISATION[0]},{ORGANISATION[1]}\n", encoding="utf-8")
    imported = run(["registry", "import", "--kind", "organisation", str(records)], env)
    assert imported.returncode == 0, imported.stderr

    verify = ["orgs", "verify", "--uscc", ORGANISATION[0].lower(), "--name", ORGANISATION[1]]
    done = run([*verify, "--json"], env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["level"], answer["uscc"]) == (3, "911***********341L")
    assert ORGANISATION[0] not in done.stdout
    status = run(["orgs", "status", ORGANISATION[0], "--json"], env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["verifications"][0]["method"] == "registry"
    plain = run(["orgs", "status", ORGANISATION[0]], env)
    assert plain.stdout.startswith("911***********341L\tlevel 3")

    mismatch = run(["orgs", "verify", "--uscc", ORGANISATION[0], "--name", "别的公司"], env)
    assert mismatch.returncode == 1
    assert "does not match" in mismatch.stderr
    invalid = run(["orgs", "verify", "--uscc", "12345", "--name", "x"], env)
    assert invalid.returncode == 1
    assert "unified social credit code" in invalid.stderr
    assert run(["orgs", "status", "91440300MA5DABCD1X"], env).returncode == 1


def test_data_key_rotation(env: dict[str, str]) -> None:
    account = ["--username", "fay", "--password", STRONG_PASSWORD, "--phone", "13800138000"]
    assert run(["users", "create", *account], env).returncode == 0
    run(["users", "staff", "clerk", "--department", DEPARTMENT], env)
    person = ["--name", PERSON[1], "--number", PERSON[0], "--staff", "clerk"]
    assert run(["realname", "counter-verify", "dora", *person], env).returncode == 0
    database = Path(env["IDP_DATA_DIR"]) / "idp.sqlite3"
    keys = Path(env["IDP_DATA_DIR"]) / "keys" / "data"
    (old_key,) = [path.stem for path in keys.glob("*.key")]

    only_key = run(["keys", "rotate-data", "--key-only", "--json"], env)
    assert only_key.returncode == 0, only_key.stderr
    new_key = json.loads(only_key.stdout)["created"]
    assert new_key > old_key
    refused = run(["keys", "prune-data"], env)
    assert refused.returncode == 1
    assert old_key in refused.stderr
    assert (keys / f"{old_key}.key").exists()

    resumed = run(["keys", "rotate-data", "--resume", "--batch-size", "1", "--json"], env)
    assert resumed.returncode == 0, resumed.stderr
    answer = json.loads(resumed.stdout)
    assert answer["key_id"] == new_key
    assert answer["rewritten"]["identities.number_encrypted"] == 1
    assert answer["rewritten"]["users.phone_encrypted"] == 1
    with sqlite3.connect(database) as connection:
        (number,) = connection.execute("SELECT number_encrypted FROM identities").fetchone()
        (phone,) = connection.execute(
            "SELECT phone_encrypted FROM users WHERE phone_encrypted IS NOT NULL"
        ).fetchone()
    assert number.startswith(f"{new_key}.")
    assert phone.startswith(f"{new_key}.")

    pruned = run(["keys", "prune-data", "--json"], env)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"removed": [old_key], "key_id": new_key}
    status = run(["realname", "status", "dora", "--json"], env)
    assert json.loads(status.stdout)["document_number"] == "110***********002X"

    again = run(["keys", "rotate-data", "--json"], env)  # a full rotation in one go
    assert again.returncode == 0, again.stderr
    assert sum(json.loads(again.stdout)["rewritten"].values()) == 3  # phone, number, name
    assert run(["keys", "rotate-data", "--resume", "--key-only"], env).returncode == 2
    assert run(["audit", "verify"], env).returncode == 0


def test_realname_expire_reports_what_it_recorded(env: dict[str, str]) -> None:
    result = run(["realname", "expire", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"expired": 0}
