"""Signals other packages listen to (the provider revokes a disabled account's grants
and tells its peers; the sign-in package ends its sessions)."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# Sent with the account (``sender``) after it was disabled and the change committed.
account_disabled = _signals.signal("account-disabled")

# Sent with the account (``sender``) after its real-name level changed and the change
# committed, with ``previous`` and ``current`` (1-5): the provider tells its peers
# (Security Event Tokens). Only sent while someone listens (the level is read twice).
level_changed = _signals.signal("level-changed")

# Sent with the account (``sender``) after its holder withdrew every grant at once and
# the change committed ("This wasn't me", a deletion asked for): the provider revokes
# the account's grants, so services' refresh tokens die and access tokens are listed.
grants_withdrawn = _signals.signal("grants-withdrawn")
