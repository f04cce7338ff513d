"""Where the bridge CA's private key lives.

``BridgeKey`` is the interface the bridge signs through (certificates, CRLs): it gives
the public key and signs bytes, and never hands the private key out, so a hardware
security module can hold it later behind the same three methods. ``FileBridgeKey``
keeps an ECDSA P-256 key in ``<data_dir>/pki/bridge-key.pem``, readable by the owner
only (0600), created once by ``idp pki init-bridge``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from asn1crypto import algos, keys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from idp.core.keys import write_private_file

KEY_FILE = Path("pki") / "bridge-key.pem"


class BridgeKeyMissing(Exception):
    """The bridge's key is not where the bridge record says; the message says where."""


class BridgeKey(Protocol):
    ref: str  # what the bridge record stores to find the key again

    def public_key_info(self) -> keys.PublicKeyInfo: ...

    def signature_algorithm(self) -> algos.SignedDigestAlgorithm: ...

    def sign(self, data: bytes) -> bytes: ...


class FileBridgeKey:
    """An ECDSA P-256 key in a PEM file (PKCS#8, 0600) under the data directory."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, ref: str) -> None:
        self._key = private_key
        self.ref = ref

    @classmethod
    def create(cls, data_dir: Path) -> FileBridgeKey:
        """A new key, written once (refuses to overwrite an existing file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(data_dir / KEY_FILE, pem)
        return cls(key, f"file:{KEY_FILE.as_posix()}")

    @classmethod
    def load(cls, data_dir: Path, ref: str) -> FileBridgeKey:
        if not ref.startswith("file:"):
            raise BridgeKeyMissing(f"the bridge key is held elsewhere ({ref})")
        path = data_dir / ref.removeprefix("file:")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise BridgeKeyMissing(f"the bridge key file {path} is missing") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise BridgeKeyMissing(f"{path} does not hold an ECDSA key")
        return cls(key, ref)

    def public_key_info(self) -> keys.PublicKeyInfo:
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return keys.PublicKeyInfo.load(der)

    def signature_algorithm(self) -> algos.SignedDigestAlgorithm:
        return algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))
