"""SM2 signatures with SM3 (GB/T 32918.2, GM/T 0009), with the default distinguishing
ID ``1234567812345678``, on top of ``gmssl``'s curve arithmetic.

What this module adds to ``gmssl``: the signer's ``Z`` value computed here for any
distinguishing ID; DER ``SEQUENCE {r, s}`` signatures (as certificates, CRLs and USB-key
drivers carry them) with ``r`` and ``s`` range-checked; the random ``k`` drawn from
``secrets`` (``gmssl`` draws it from ``random``); the public point given as bytes, never
through ``CryptSM2``'s constructor (which strips leading ``0``/``4`` hex digits of some
keys); private keys read from OpenSSL's PEM (PKCS#8 or SEC 1).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from asn1crypto import algos, keys, pem
from gmssl import func, sm3
from gmssl.sm2 import CryptSM2, default_ecc_table

DEFAULT_ID = b"1234567812345678"
CURVE_OID = "1.2.156.10197.1.301"
_N = int(default_ecc_table["n"], 16)
_CURVE_HEX = (default_ecc_table["a"] + default_ecc_table["b"] + default_ecc_table["g"]).lower()


class Sm2KeyError(ValueError):
    """The key is not an SM2 key or cannot be read."""


@dataclass(frozen=True)
class PrivateKey:
    value: int
    point: bytes  # uncompressed public point: 04 || x || y


def _sm3(data: bytes) -> bytes:
    return bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(data)))


def _digest(point: bytes, message: bytes, distid: bytes) -> bytes:
    """e = SM3(Z || M), Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)."""
    entl = (len(distid) * 8).to_bytes(2, "big")
    z = _sm3(entl + distid + bytes.fromhex(_CURVE_HEX) + point[1:])
    return _sm3(z + message)


def _crypt(point: bytes, private_value: int | None = None) -> CryptSM2:
    crypt = CryptSM2(
        private_key="" if private_value is None else f"{private_value:064x}",
        public_key="",
    )
    crypt.public_key = point[1:].hex()
    return crypt


def _valid_point(point: bytes) -> bool:
    return len(point) == 65 and point[0] == 4


def verify(point: bytes, signature: bytes, message: bytes, distid: bytes = DEFAULT_ID) -> bool:
    """Whether ``signature`` (DER ``SEQUENCE {r, s}``) over ``message`` verifies with the
    uncompressed public point ``point`` (``04 || x || y``)."""
    if not _valid_point(point):
        return False
    try:
        parsed = algos.DSASignature.load(signature, strict=True)
        r, s = int(parsed["r"].native), int(parsed["s"].native)
    except (ValueError, TypeError):
        return False
    if not (1 <= r < _N and 1 <= s < _N):
        return False
    crypt = _crypt(point)
    return bool(crypt.verify(f"{r:064x}{s:064x}", _digest(point, message, distid)))


def sign(key: PrivateKey, message: bytes, distid: bytes = DEFAULT_ID) -> bytes:
    """A DER ``SEQUENCE {r, s}`` signature over ``message``."""
    crypt = _crypt(key.point, key.value)
    digest = _digest(key.point, message, distid)
    while True:
        k = secrets.randbelow(_N - 1) + 1
        raw = crypt.sign(digest, f"{k:064x}")
        if raw:  # None: r or s came out 0 (or r + k = n); draw again
            break
    r, s = int(raw[:64], 16), int(raw[64:], 16)
    return bytes(algos.DSASignature({"r": r, "s": s}).dump())


def load_private_key(data: bytes) -> PrivateKey:
    """An SM2 private key from PEM or DER: PKCS#8 (``PRIVATE KEY``) or SEC 1
    (``EC PRIVATE KEY``), as OpenSSL 3 writes them."""
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    try:
        ec_key = _ec_private_key(data)
        value = int(ec_key["private_key"].native)
    except (ValueError, TypeError, KeyError) as exc:
        raise Sm2KeyError(f"not an SM2 private key: {exc}") from None
    point = public_point(value)
    return PrivateKey(value, point)


def _ec_private_key(data: bytes) -> keys.ECPrivateKey:
    try:
        info = keys.PrivateKeyInfo.load(data, strict=True)
        algorithm = info["private_key_algorithm"]
        if algorithm["algorithm"].native != "ec":
            raise Sm2KeyError("not an elliptic-curve key")
        curve = algorithm["parameters"]
        if curve.name != "named" or curve.chosen.dotted != CURVE_OID:
            raise Sm2KeyError("not a key on the SM2 curve")
        return keys.ECPrivateKey.load(info["private_key"].contents)
    except (ValueError, TypeError) as pkcs8_error:
        if isinstance(pkcs8_error, Sm2KeyError):
            raise
        ec_key = keys.ECPrivateKey.load(data, strict=True)
        curve = ec_key["parameters"]
        if curve.name != "named" or curve.chosen.dotted != CURVE_OID:
            raise Sm2KeyError("not a key on the SM2 curve") from None
        return ec_key


def public_point(value: int) -> bytes:
    """The uncompressed public point ``d·G`` of a private value."""
    if not 1 <= value < _N:
        raise Sm2KeyError("the private value is out of range")
    crypt = CryptSM2(private_key=f"{value:064x}", public_key="")
    xy = crypt._kg(value, default_ecc_table["g"])  # gmssl's scalar multiplication
    return b"\x04" + bytes.fromhex(xy)


def point_of(public_key_info: keys.PublicKeyInfo) -> bytes:
    """The public point of an SM2 ``SubjectPublicKeyInfo``."""
    return bytes(public_key_info["public_key"].native)


__all__ = [
    "DEFAULT_ID",
    "PrivateKey",
    "Sm2KeyError",
    "load_private_key",
    "point_of",
    "public_point",
    "sign",
    "verify",
]
