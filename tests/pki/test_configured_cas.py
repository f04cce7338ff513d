"""``idp pki import-configured``: the settings' ``[[local_cas]]`` registered as
``import-ca`` would, once; a bad entry is a clear refusal that registers nothing of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.pki.certs import make_ca
from tests.pki.conftest import LOCAL, PLATFORM
from tests.pki.test_bridge import invoke, invoke_json, write

ROOTS = {"gdca": make_ca("Configured Root G", key="rsa"), "szca": make_ca("Configured Root S")}


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    entries = []
    for name, issued in ROOTS.items():
        entries.append(
            {
                "name": name,
                "root": str(write(tmp_path / f"{name}.pem", issued)),
                "policy_map": [f"{LOCAL}={PLATFORM}"],
                "identity_rules": ["person:subject:serialNumber"],
                "crl_urls": [f"http://crl.example/{name}.crl"],
                "revocation": "soft",
            }
        )
    return {"local_cas": entries}


def test_configured_cas_are_registered_once(app: Flask) -> None:
    invoke_json(app, "init-bridge", "--policy", PLATFORM)
    first = invoke_json(app, "import-configured")
    assert [(row["name"], row["status"]) for row in first] == [
        ("gdca", "imported"),
        ("szca", "imported"),
    ]
    (gdca,) = [ca for ca in invoke_json(app, "list")["cas"] if ca["name"] == "gdca"]
    assert gdca["policy_map"] == [{"local": LOCAL, "platform": PLATFORM}]
    assert gdca["identity_rules"] == ["person:subject:serialNumber"]
    assert gdca["revocation"] == "soft"
    assert gdca["crl_urls"] == ["http://crl.example/gdca.crl"]
    again = invoke_json(app, "import-configured")
    assert {row["status"] for row in again} == {"already_registered"}


def test_a_configured_ca_without_a_bridge_is_refused(app: Flask) -> None:
    refused = invoke(app, "import-configured")
    assert refused.exit_code == 1
    assert "local_cas gdca:" in refused.output
    assert "init-bridge" in refused.output
