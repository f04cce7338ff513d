"""Signals other packages listen to (the provider revokes a disabled account's grants;
the sign-in package ends its sessions)."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# Sent with the account (``sender``) after it was disabled and the change committed.
account_disabled = _signals.signal("account-disabled")
