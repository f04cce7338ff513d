"""A member of staff may record only so many counter checks per hour."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from accounts.realname.models import Verification
from tests.accounts.test_counter import FORM, count, people, staff_client
from tests.support import create_user, submit
from tests.support import text as body

__all__ = ["people", "staff_client"]  # fixtures


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"counter_checks_per_staff_per_hour": 2}


def test_counter_checks_per_staff_are_limited(app: Flask, staff_client: FlaskClient) -> None:
    for username in ("user1", "user2"):
        create_user(app, username)
    assert submit(staff_client, "/staff/counter", FORM).status_code == 200
    second = {**FORM, "username": "user1", "id_number": "11010519491231002X"}
    # the same number for another account: refused, and it counts
    assert submit(staff_client, "/staff/counter", second).status_code == 409
    third = submit(staff_client, "/staff/counter", {**FORM, "username": "user2"})
    assert third.status_code == 429
    assert "many counter checks" in body(third)
    assert count(app, Verification) == 1  # the third was not recorded
