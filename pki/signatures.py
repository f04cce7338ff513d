"""Checking one signature made by a certificate's key: certificates, CRLs, OCSP
responses and sign-in challenges all come here.

RSA (PKCS#1 v1.5 and PSS) and ECDSA go through ``cryptography``; SM2 with SM3
(GB/T 32918, GM/T 0009) through ``pki.sm2``.
"""

from __future__ import annotations

from asn1crypto import algos, keys
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pki import sm2

SM2_WITH_SM3 = "1.2.156.10197.1.501"
SM2_CURVE = "1.2.156.10197.1.301"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class SignatureInvalid(Exception):
    """The signature does not verify, or cannot be checked (the message says which)."""


def is_sm2_key(public_key_info: keys.PublicKeyInfo) -> bool:
    if public_key_info["algorithm"]["algorithm"].native != "ec":
        return False
    parameters = public_key_info["algorithm"]["parameters"]
    return bool(parameters.name == "named" and parameters.chosen.dotted == SM2_CURVE)


def verify_signed(
    public_key_info: keys.PublicKeyInfo,
    algorithm: algos.SignedDigestAlgorithm,
    signature: bytes,
    data: bytes,
) -> None:
    """Check ``signature`` over ``data`` by the key in ``public_key_info`` with
    ``algorithm`` (as a certificate, CRL or OCSP response names it). Raises
    ``SignatureInvalid``."""
    oid = algorithm["algorithm"].dotted
    if oid == SM2_WITH_SM3 or is_sm2_key(public_key_info):
        _verify_sm2(public_key_info, oid, signature, data)
        return
    try:
        public_key = serialization.load_der_public_key(public_key_info.dump())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureInvalid(f"unsupported public key: {exc}") from None
    try:
        mechanism = algorithm.signature_algo
        digest = None if mechanism == "ed25519" else _hash_of(algorithm)
    except ValueError as exc:
        raise SignatureInvalid(f"unsupported signature algorithm {oid}") from exc
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and mechanism == "rsassa_pkcs1v15":
            assert digest is not None
            public_key.verify(signature, data, padding.PKCS1v15(), digest)
        elif isinstance(public_key, rsa.RSAPublicKey) and mechanism == "rsassa_pss":
            params = algorithm["parameters"]
            pss_hash = _HASHES[params["hash_algorithm"]["algorithm"].native]()
            mgf_hash = _HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
            pss = padding.PSS(padding.MGF1(mgf_hash), params["salt_length"].native)
            public_key.verify(signature, data, pss, pss_hash)
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and mechanism == "ecdsa":
            assert digest is not None
            public_key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(public_key, ed25519.Ed25519PublicKey) and mechanism == "ed25519":
            public_key.verify(signature, data)
        else:
            raise SignatureInvalid(f"the signature algorithm ({mechanism}) does not match the key")
    except InvalidSignature:
        raise SignatureInvalid("the signature does not verify") from None
    except (KeyError, ValueError) as exc:
        raise SignatureInvalid(f"the signature cannot be checked: {exc}") from None


def _hash_of(algorithm: algos.SignedDigestAlgorithm) -> hashes.HashAlgorithm:
    name = algorithm.hash_algo
    if name not in _HASHES:
        raise ValueError(name)
    return _HASHES[name]()


def _verify_sm2(
    public_key_info: keys.PublicKeyInfo, oid: str, signature: bytes, data: bytes
) -> None:
    """SM2 with SM3; implemented in ``pki.sm2``."""
    if oid != SM2_WITH_SM3 or not is_sm2_key(public_key_info):
        raise SignatureInvalid("SM2 keys sign with SM2-with-SM3 only")
    point = public_key_info["public_key"].native
    if not sm2.verify(point, signature, data):
        raise SignatureInvalid("the signature does not verify")
