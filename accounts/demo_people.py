"""The demo's made-up people, shared by ``idp demo`` and the demo PKI (``idp pki
demo``), so that the citizen certificate of the demo PKI names the person the demo
registry knows and a demo user can bind it to the account they raise to real-name
level 3. Kept in accounts, below both ``idp.cli`` and ``pki`` in the layers."""

from __future__ import annotations

from typing import Final

# the example number of design.md and GB 11643, under a made-up name
DEMO_PERSON: Final = ("王小丽", "11010519491231002X")
