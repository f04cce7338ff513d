"""``idp clients create|update`` for the real-name settings of a client."""

from __future__ import annotations

import json

from tests.test_cli import env, run

__all__ = ["env"]  # the fixture


def test_a_client_minimum_level_and_document_number_release(env: dict[str, str]) -> None:
    assert run(["init"], env).returncode == 0
    base = ["clients", "create", "--client-id", "tax", "--redirect-uri", "https://tax.example/cb"]
    created = run([*base, "--min-level", "3", "--scope", "openid realname", "--json"], env)
    assert created.returncode == 0, created.stderr
    shown = json.loads(created.stdout)
    assert (shown["min_level"], shown["document_number_release"]) == (3, "masked")

    too_high = run([*base[:3], "other", *base[4:], "--min-level", "6"], env)
    assert too_high.returncode == 2  # usage error, nothing registered

    updated = run(
        ["clients", "update", "tax", "--min-level", "4", "--document-number", "full", "--json"], env
    )
    assert updated.returncode == 0, updated.stderr
    shown = json.loads(updated.stdout)
    assert (shown["min_level"], shown["document_number_release"]) == (4, "full")
    listed = json.loads(run(["clients", "list", "--json"], env).stdout)
    assert [c["client_id"] for c in listed] == ["tax"]
    assert listed[0]["min_level"] == 4

    assert run(["clients", "update", "tax"], env).returncode == 1  # nothing to change
    missing = run(["clients", "update", "nobody", "--min-level", "2"], env)
    assert missing.returncode == 1
    assert "no client" in missing.stderr


def test_a_client_that_requires_an_organisation(env: dict[str, str]) -> None:
    assert run(["init"], env).returncode == 0
    base = ["clients", "create", "--client-id", "corp", "--redirect-uri", "https://corp.example/cb"]
    created = run([*base, "--require-org", "--json"], env)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["require_org"] is True
    plain = run([*base[:3], "plain", *base[4:], "--json"], env)
    assert json.loads(plain.stdout)["require_org"] is False

    updated = run(["clients", "update", "corp", "--no-require-org", "--json"], env)
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["require_org"] is False
    run(["clients", "update", "plain", "--require-org"], env)
    listed = {c["client_id"]: c for c in json.loads(run(["clients", "list", "--json"], env).stdout)}
    assert (listed["corp"]["require_org"], listed["plain"]["require_org"]) == (False, True)
