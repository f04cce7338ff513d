"""SM2 signatures with SM3 (GB/T 32918, GM/T 0009), default distinguishing ID
``1234567812345678``."""

from __future__ import annotations

DEFAULT_ID = b"1234567812345678"


def verify(point: bytes, signature: bytes, message: bytes, distid: bytes = DEFAULT_ID) -> bool:
    """Whether ``signature`` (DER ``SEQUENCE {r, s}``) over ``message`` verifies with the
    uncompressed public point ``point`` (``04 || x || y``)."""
    raise NotImplementedError("SM2 verification lands with the SM2 work")
