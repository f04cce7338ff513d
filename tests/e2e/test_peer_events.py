"""Two real instances as peers (the city and the provincial hall, each with its own
issuer, data and keys): a Security Event Token owed while the peer is down is pushed
again, delivered once it is up, and verified there against the sender's published
keys."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.servers import free_port, idp, running
from tests.support import STRONG_PASSWORD

RISC_DISABLED = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"


def listed(env: dict[str, str], what: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(idp(env, "events", what, "--json"))
    return rows


def wait_for(condition: Any, what: str, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_set_owed_while_the_peer_is_down_is_delivered_when_it_is_up(tmp_path: Path) -> None:
    ports = {"city": free_port(), "province": free_port()}
    issuers = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    envs = {}
    for name, other in (("city", "province"), ("province", "city")):
        peers = [
            {
                "name": other,
                "issuer": issuers[other],
                "set_push_url": f"{issuers[other]}/security-events",
            }
        ]
        envs[name] = {
            "IDP_DATA_DIR": str(tmp_path / name),
            "IDP_ISSUER": issuers[name],
            "IDP_PEERS": json.dumps(peers),
            "IDP_LOG_FORMAT": "text",
            "IDP_LOG_LEVEL": "WARNING",
        }
        idp(envs[name], "init")
    city, province = envs["city"], envs["province"]
    idp(city, "users", "create", "--username", "alice", "--password", STRONG_PASSWORD)
    city_port = ports["city"]
    with running(["serve", "--port", str(city_port)], city, city_port, tmp_path / "city.log"):
        idp(city, "users", "disable", "alice")
        (owed,) = wait_for(
            lambda: [row for row in listed(city, "sent") if row["attempts"] >= 1],
            "a first attempt at the peer that is down",
        )
        assert owed["peer"] == "province"
        assert owed["delivered_at"] is None
        assert owed["failed_at"] is None  # kept for a retry
        port = ports["province"]
        with running(["serve", "--port", str(port)], province, port, tmp_path / "prov.log"):
            (delivered,) = wait_for(
                lambda: [row for row in listed(city, "sent") if row["delivered_at"]],
                "the retry to reach the peer",
            )
            (received,) = listed(province, "received")
    assert delivered["attempts"] >= 2
    assert received["peer"] == "city"
    assert received["jti"] == delivered["jti"]
    assert received["event"] == RISC_DISABLED
    assert received["subject"]["iss"] == issuers["city"]
    # the province has no account linked to the city's alice: recorded, not applied
    assert received["outcome"] == "unknown_subject"
