"""Fixtures shared by the certificate sign-in tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from pki.identity import GMT0015_IDENTITY_NUMBER
from tests.pki.certs import Issued, make_ca
from tests.pki.test_bridge import invoke_json, write

PLATFORM = "2.25.1"
LOCAL = "1.2.156.1.1"
GMT0015_CREDIT_CODE = "1.2.156.10260.4.1.4"


@pytest.fixture
def city_ca(app: Flask, tmp_path: Path) -> Issued:
    """A bridge and one cross-certified RSA CA, ``city-ca``, whose certificates carry
    the person's number and the enterprise's credit code in GM/T 0015 extensions."""
    invoke_json(app, "init-bridge", "--policy", PLATFORM)
    root = make_ca("City CA", key="rsa", policies=[LOCAL])
    invoke_json(
        app, "import-ca", "--name", "city-ca", "--root", str(write(tmp_path / "r.pem", root)),
        "--policy-map", f"{LOCAL}={PLATFORM}", "--revocation", "off",
        "--identity", f"person:ext:{GMT0015_IDENTITY_NUMBER}",
        "--identity", f"organisation:ext:{GMT0015_CREDIT_CODE}",
    )  # fmt: skip
    invoke_json(app, "cross-certify", "city-ca")
    return root
