"""The platform's trust store: the bridge CA as anchor, the registered local CAs'
cross-certificates and intermediates, their policies and revocation settings.

A stub on the ``validation`` branch: the lead replaces it with the real store."""

from __future__ import annotations

from pki.validation import BadInput, ValidationOptions, ValidationResult


def validate_with_trust_store(leaf_der: bytes, options: ValidationOptions) -> ValidationResult:
    """Validate ``leaf_der`` through the trust store (``options.anchors`` is empty;
    ``options.revocation`` None means each CA's configured mode)."""
    del leaf_der, options  # the stub has no store to look in
    raise BadInput("the platform trust store is not set up")
