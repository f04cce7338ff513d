"""Challenge signing for certificate sign-in with a USB key (issue 11, decision 32): the
one-time challenges the sign-in page hands out, the check of what the key's driver
signed, and ``sign_challenge``, which stands in for the driver.

A challenge is ``idp-login:`` and 32 random bytes (base64url). It lives in the store
under ``pki:challenge:<SHA-256 of the challenge>`` with the SHA-256 of the browser
session's id and the time it was issued; the store forgets it after ``ttl`` seconds and
``consume`` checks the time again against the clock. ``consume`` takes the record
(``Store.take``) before it looks at it, so a challenge is gone after its first use,
whoever presented it: a replay, a stale one and another session's one all fail, and the
last can no longer be used by its own session either.

The driver signs ``challenge.encode("utf-8")``: ECDSA on P-256 with SHA-256 (a DER
signature), RSA PKCS#1 v1.5 with SHA-256, or SM2 with SM3 and the default
distinguishing ID (a DER signature); the POST carries the signature in base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from typing import Final

from asn1crypto import algos, keys, pem, x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from idp.core.clock import Clock, SystemClock
from idp.core.store import Store
from pki import sm2
from pki.signatures import SM2_WITH_SM3, SignatureInvalid, is_sm2_key, verify_signed

CHALLENGE_TTL_SECONDS: Final = 120
CHALLENGE_PREFIX: Final = "idp-login:"

_KEY_PREFIX: Final = "pki:challenge:"
_CHALLENGE: Final = re.compile(re.escape(CHALLENGE_PREFIX) + r"[A-Za-z0-9_-]{43}")
_MAX_SIGNATURE_TEXT: Final = 4096  # base64 of an RSA-16384 signature is 2,732
_MAX_CERTIFICATE: Final = 64 * 1024
_P256: Final = "secp256r1"


class ChallengeRefused(Exception):
    """The challenge or its signature is not accepted. ``reason`` is an English
    sentence (a message id) that is safe to show to the person signing in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


UNKNOWN: Final = "The challenge is unknown or was already used. Reload the page and sign again."
EXPIRED: Final = "The challenge has expired. Reload the page and sign again."
OTHER_SESSION: Final = (
    "The challenge was issued to another browser session. Reload the page and sign again."
)
BAD_SIGNATURE: Final = "The signature does not verify with the certificate's key."
BAD_ENCODING: Final = "The signature is not valid base64."
UNREADABLE_CERTIFICATE: Final = "The certificate cannot be read."
UNSUPPORTED_KEY: Final = (
    "The certificate's key cannot sign in: only ECDSA P-256, RSA and SM2 keys can."
)
NOT_FOR_SIGNING: Final = "The certificate's key usage does not allow digital signatures."


class Challenges:
    """Issues and consumes sign-in challenges in the short-lived store."""

    def __init__(
        self, store: Store, *, ttl: int = CHALLENGE_TTL_SECONDS, clock: Clock | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError("a challenge's lifetime must be a positive number of seconds")
        self._store = store
        self._ttl = ttl
        self._clock = clock or SystemClock()

    def issue(self, binding: str) -> str:
        """A fresh challenge for the browser session ``binding`` (an opaque id)."""
        if not binding:
            raise ValueError("a challenge must be bound to a browser session")
        challenge = CHALLENGE_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(
            b"="
        ).decode("ascii")
        record = {"binding": _digest(binding), "issued": self._clock.now().timestamp()}
        self._store.set(_key(challenge), json.dumps(record).encode(), self._ttl)
        return challenge

    def consume(self, challenge: str, binding: str) -> None:
        """Use ``challenge`` once, for the session ``binding``: ``ChallengeRefused`` if it
        is unknown, used, expired or was issued to another session."""
        if not _CHALLENGE.fullmatch(challenge):
            raise ChallengeRefused(UNKNOWN)
        raw = self._store.take(_key(challenge))
        if raw is None:
            raise ChallengeRefused(UNKNOWN)
        try:
            record = json.loads(raw)
            bound, issued = str(record["binding"]), float(record["issued"])
        except (ValueError, KeyError, TypeError):
            raise ChallengeRefused(UNKNOWN) from None
        if not hmac.compare_digest(bound, _digest(binding)):
            raise ChallengeRefused(OTHER_SESSION)
        if self._clock.now().timestamp() - issued > self._ttl:
            raise ChallengeRefused(EXPIRED)


def _key(challenge: str) -> str:
    return _KEY_PREFIX + hashlib.sha256(challenge.encode()).hexdigest()


def _digest(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


# --- signatures -----------------------------------------------------------------------


def verify_challenge_signature(certificate_der: bytes, challenge: str, signature_b64: str) -> None:
    """Check that the certificate's key signed ``challenge`` (UTF-8) as a USB-key driver
    does; ``ChallengeRefused`` for bad base64, another key's or another message's
    signature, a signature of another algorithm, or a certificate whose keyUsage leaves
    out digitalSignature. It does not check the certificate itself (path validation
    does) or the challenge (``Challenges.consume`` does)."""
    certificate = _certificate(certificate_der)
    public_key, algorithm = _signing(certificate)
    signature = _signature_bytes(signature_b64)
    try:
        verify_signed(public_key, algorithm, signature, challenge.encode("utf-8"))
    except (SignatureInvalid, UnicodeEncodeError):  # a lone surrogate was never issued
        raise ChallengeRefused(BAD_SIGNATURE) from None


def _certificate(data: bytes) -> x509.Certificate:
    if len(data) > _MAX_CERTIFICATE:
        raise ChallengeRefused(UNREADABLE_CERTIFICATE)
    try:
        if pem.detect(data):
            _, _, data = pem.unarmor(data)
        certificate = x509.Certificate.load(data, strict=True)
        certificate.native  # noqa: B018 - parses every field now, not later
    except (ValueError, TypeError, KeyError):
        raise ChallengeRefused(UNREADABLE_CERTIFICATE) from None
    return certificate


def _signing(
    certificate: x509.Certificate,
) -> tuple[keys.PublicKeyInfo, algos.SignedDigestAlgorithm]:
    """The certificate's public key and the one algorithm a driver signs with for it."""
    usage = certificate.key_usage_value
    if usage is not None and "digital_signature" not in usage.native:
        raise ChallengeRefused(NOT_FOR_SIGNING)
    public_key = certificate.public_key
    if is_sm2_key(public_key):
        name = SM2_WITH_SM3
    elif public_key.algorithm == "rsa":
        name = "sha256_rsa"
    elif public_key.algorithm == "ec" and public_key.curve == ("named", _P256):
        name = "sha256_ecdsa"
    else:
        raise ChallengeRefused(UNSUPPORTED_KEY)
    return public_key, algos.SignedDigestAlgorithm({"algorithm": name})


def _signature_bytes(text: str) -> bytes:
    compact = "".join(text.split())  # drivers may wrap lines
    if not compact or len(compact) > _MAX_SIGNATURE_TEXT:
        raise ChallengeRefused(BAD_ENCODING)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ChallengeRefused(BAD_ENCODING) from None


def sign_challenge(key_pem: bytes, certificate_pem: bytes, challenge: str) -> dict[str, str]:
    """What the driver posts for ``challenge``: ``{"challenge", "certificate" (PEM),
    "signature" (base64)}``, signed with ``key_pem`` (PKCS#8 or SEC 1 PEM; EC P-256,
    RSA or SM2). ``ValueError`` saying why when the key cannot be read, does not match
    the certificate, or the certificate cannot sign in."""
    try:
        certificate = _certificate(certificate_pem)
        public_key, _ = _signing(certificate)
    except ChallengeRefused as exc:
        raise ValueError(exc.reason) from None
    try:
        message = challenge.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the challenge is not text that UTF-8 can encode") from None
    if is_sm2_key(public_key):
        signature = _sign_sm2(key_pem, public_key, message)
    else:
        signature = _sign_with_cryptography(key_pem, public_key, message)
    return {
        "challenge": challenge,
        "certificate": pem.armor("CERTIFICATE", certificate.dump()).decode("ascii"),
        "signature": base64.b64encode(signature).decode("ascii"),
    }


_MISMATCH: Final = "the key does not belong to the certificate"


def _sign_sm2(key_pem: bytes, public_key: keys.PublicKeyInfo, message: bytes) -> bytes:
    try:
        key = sm2.load_private_key(key_pem)
    except sm2.Sm2KeyError as exc:
        raise ValueError(
            f"the certificate has an SM2 key, and the key file is not one ({exc})"
        ) from None
    except ValueError:  # asn1crypto's, for a broken PEM
        raise ValueError("the key file is not a PEM private key (PKCS#8 or SEC 1)") from None
    if not hmac.compare_digest(key.point, sm2.point_of(public_key)):
        raise ValueError(f"{_MISMATCH}: their public keys differ")
    return sm2.sign(key, message)


def _sign_with_cryptography(
    key_pem: bytes, public_key: keys.PublicKeyInfo, message: bytes
) -> bytes:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ValueError("the key file is encrypted; decrypt it first") from None
    except (ValueError, UnsupportedAlgorithm):
        if _is_sm2_key_file(key_pem):
            raise ValueError(f"{_MISMATCH}: the key file holds an SM2 key") from None
        raise ValueError("the key file is not a PEM private key (PKCS#8 or SEC 1)") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(*spki)
    theirs = serialization.load_der_public_key(public_key.dump()).public_bytes(*spki)
    if not hmac.compare_digest(ours, theirs):
        raise ValueError(f"{_MISMATCH}: their public keys differ")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError("only ECDSA P-256, RSA and SM2 keys sign challenges")  # pragma: no cover


def _is_sm2_key_file(key_pem: bytes) -> bool:
    try:
        sm2.load_private_key(key_pem)
    except ValueError:  # Sm2KeyError, or asn1crypto's for a broken PEM
        return False
    return True


__all__ = [
    "CHALLENGE_PREFIX",
    "CHALLENGE_TTL_SECONDS",
    "ChallengeRefused",
    "Challenges",
    "sign_challenge",
    "verify_challenge_signature",
]
