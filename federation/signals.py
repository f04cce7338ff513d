"""Signals the federation package sends (the provider tells its peers)."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# Sent with the account (``sender``) after one of its upstream links was removed and the
# change committed, with ``upstream`` (the upstream's name), ``issuer`` and ``subject``
# (the upstream's identifier of the person).
link_removed = _signals.signal("federation-link-removed")
