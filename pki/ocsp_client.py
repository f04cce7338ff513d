"""Asking a CA's OCSP responder about one certificate (RFC 6960, RFC 5019 profile),
and checking the answer, for the trust store's revocation checks (``pki.revocation``).

pyhanko's OCSP processing (used by ``pki.validation`` for responses given as files)
needs a whole validation context per question. The trust store asks one question per
certificate, with its issuer already validated, so this module does just that and
nothing more, with a reason a person can act on for each refusal:

* the request has one certID (SHA-1 as RFC 5019 asks, or SHA-256) and a random
  16-byte nonce (RFC 8954); it is POSTed as ``application/ocsp-request``, and the
  answer read up to ``MAX_OCSP_BYTES``;
* the answer must be ``successful``, a basic response, signed (``pki.signatures``, so
  SM2 works) by the issuing CA itself or by a responder certificate the CA issued with
  the id-kp-OCSPSigning extended key usage, valid at the time of the check. The
  delegated responder's own revocation is not checked (RFC 6960 4.2.2.2.1: CAs mark
  such certificates id-pkix-ocsp-nocheck);
* its single response must be for this certificate (issuer name and key hashes and
  serial, in the hash algorithm the responder chose);
* the nonce: a different nonce is refused as stale or replayed. A missing nonce is
  accepted, as RFC 5019 responders and CDN caches send pre-produced responses
  without one, when the response carries a nextUpdate that has not passed (the CA
  bounds how long it can be replayed), or when its thisUpdate is at most
  ``FRESH_WITHOUT_NONCE`` old. ``require_nonce`` refuses every response without one;
* thisUpdate no more than ``CLOCK_SKEW`` in the future, nextUpdate not passed.

``http_fetch`` is the HTTP client of both OCSP and CRL fetching: ``requests`` with a
timeout per socket operation, an overall deadline (checked after every socket read),
no more than three redirects, http and https only, no content decoding, and a byte
limit on the body, read as a stream.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from urllib.parse import urlsplit

import requests
import urllib3
from asn1crypto import core, keys, ocsp, x509

from pki.signatures import SignatureInvalid, verify_signed
from pki.validation import REVOCATION_REASONS
from pki.validation import rfc4514 as _rfc4514

MAX_OCSP_BYTES: Final = 64 * 1024
CLOCK_SKEW: Final = timedelta(minutes=5)
FRESH_WITHOUT_NONCE: Final = timedelta(minutes=5)
NONCE_BYTES: Final = 16
MAX_REDIRECTS: Final = 3

# (url, body or None for GET, content type of the body or None) -> the response body
Fetch = Callable[[str, bytes | None, str | None], bytes]

REASON_NAMES: Final = REVOCATION_REASONS
_HASHES: Final = {"sha1", "sha224", "sha256", "sha384", "sha512"}


class FetchError(Exception):
    """A URL could not be fetched; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OcspError(Exception):
    """No usable OCSP answer; ``reason`` is one line a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OcspAnswer:
    status: Literal["good", "revoked", "unknown"]
    revoked_at: datetime | None
    reason: str | None  # RFC 5280's name when revoked ("unspecified" if none given)
    this_update: datetime
    next_update: datetime | None


# --- HTTP -------------------------------------------------------------------------------


def http_fetch(
    url: str,
    body: bytes | None,
    content_type: str | None,
    *,
    timeout: float = 5.0,
    max_bytes: int = MAX_OCSP_BYTES,
) -> bytes:
    """GET ``url`` (``body`` None) or POST ``body``; the response body, at most
    ``max_bytes``, within ``timeout`` seconds in all. ``FetchError`` otherwise."""
    if urlsplit(url).scheme not in {"http", "https"}:
        raise FetchError(f"unsupported URL {url!r} (only http and https are fetched)")
    deadline = time.monotonic() + timeout
    headers = {"Accept-Encoding": "identity"}  # no decompression (and no bomb)
    if content_type:
        headers["Content-Type"] = content_type
    try:
        with requests.Session() as session:
            session.max_redirects = MAX_REDIRECTS
            method = "GET" if body is None else "POST"
            with session.request(
                method, url, data=body, headers=headers, timeout=timeout, stream=True
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"{url} answered HTTP {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(
                        f"{url} sent {declared} bytes, more than the {max_bytes} bytes accepted"
                    )
                return _read_body(response, url, max_bytes, deadline, timeout)
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise FetchError(f"{url} did not answer within {timeout:g} s") from None
    except urllib3.exceptions.HTTPError as exc:
        raise FetchError(f"cannot fetch {url}: {type(exc).__name__}") from None
    except requests.ConnectionError:
        raise FetchError(f"cannot connect to {url}") from None
    except requests.RequestException as exc:
        raise FetchError(f"cannot fetch {url}: {type(exc).__name__}") from None


def _read_body(
    response: requests.Response, url: str, max_bytes: int, deadline: float, timeout: float
) -> bytes:
    """The body as it arrives (``read1``: one socket read at a time, so a server that
    trickles bytes cannot stretch one read past the deadline), undecoded, bounded."""
    chunks: list[bytes] = []
    size = 0
    while chunk := response.raw.read1(64 * 1024, decode_content=False):
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"{url} sent more than the {max_bytes} bytes accepted")
        if time.monotonic() > deadline:
            raise FetchError(f"{url} did not answer within {timeout:g} s")
        chunks.append(chunk)
    return b"".join(chunks)


# --- Query ------------------------------------------------------------------------------


def query(
    certificate_der: bytes,
    issuer_der: bytes,
    url: str,
    *,
    at: datetime | None = None,
    timeout: float = 5.0,
    fetch: Fetch | None = None,
    hash_algorithm: Literal["sha1", "sha256"] = "sha1",
    require_nonce: bool = False,
) -> OcspAnswer:
    """Ask the responder at ``url`` about ``certificate_der`` (issued by
    ``issuer_der``) and check its answer at ``at`` (default now). ``OcspError``
    when there is no usable answer."""
    certificate = _load_certificate(certificate_der, "the certificate")
    issuer = _load_certificate(issuer_der, "the CA certificate")
    moment = at or datetime.now(UTC)
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    serial = int(certificate.serial_number)
    nonce = secrets.token_bytes(NONCE_BYTES)
    request = build_request(issuer, serial, nonce, hash_algorithm)
    transport = fetch or (lambda u, b, c: http_fetch(u, b, c, timeout=timeout))
    try:
        raw = transport(url, request, "application/ocsp-request")
    except FetchError as exc:
        raise OcspError(exc.reason) from None
    if len(raw) > MAX_OCSP_BYTES:
        raise OcspError(f"the OCSP response is too large ({len(raw)} bytes)")
    return check_response(raw, issuer, serial, nonce=nonce, at=moment, require_nonce=require_nonce)


def build_request(
    issuer: x509.Certificate, serial: int, nonce: bytes, hash_algorithm: str = "sha1"
) -> bytes:
    """A DER OCSPRequest for one certificate, with a nonce extension."""
    cert_id = ocsp.CertId(
        {
            "hash_algorithm": {"algorithm": hash_algorithm},
            "issuer_name_hash": _name_hash(issuer, hash_algorithm),
            "issuer_key_hash": _key_hash(
                issuer["tbs_certificate"]["subject_public_key_info"], hash_algorithm
            ),
            "serial_number": serial,
        }
    )
    request = ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [{"req_cert": cert_id}],
                "request_extensions": [
                    {"extn_id": "nonce", "critical": False, "extn_value": nonce}
                ],
            }
        }
    )
    return bytes(request.dump())


def check_response(
    raw: bytes,
    issuer: x509.Certificate,
    serial: int,
    *,
    nonce: bytes | None,
    at: datetime,
    require_nonce: bool = False,
) -> OcspAnswer:
    """Check a DER OCSPResponse about ``serial`` of ``issuer``; ``OcspError`` if it
    cannot be used."""
    basic = _basic_response(raw)
    try:
        return _check_basic(basic, issuer, serial, nonce, at, require_nonce)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise OcspError(f"the OCSP response cannot be processed: {exc}") from None


def _basic_response(raw: bytes) -> ocsp.BasicOCSPResponse:
    try:
        response = ocsp.OCSPResponse.load(raw, strict=True)
        status = response["response_status"].native
        response_bytes = response["response_bytes"]
        kind = response_bytes["response_type"].native if status == "successful" else None
        basic = response_bytes["response"].parsed if kind == "basic_ocsp_response" else None
        if basic is not None:
            basic.native  # noqa: B018 -- decode everything now (the size is bounded)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise OcspError(
            f"the OCSP response cannot be read (not a DER OCSP response): {exc}"
        ) from None
    if status != "successful":
        raise OcspError(f"the OCSP responder answered {status!r}, not a status")
    if basic is None:
        raise OcspError("the OCSP response is not a basic OCSP response")
    result: ocsp.BasicOCSPResponse = basic
    return result


def _check_basic(
    basic: ocsp.BasicOCSPResponse,
    issuer: x509.Certificate,
    serial: int,
    nonce: bytes | None,
    at: datetime,
    require_nonce: bool,
) -> OcspAnswer:
    data = basic["tbs_response_data"]
    signer = _signer(basic, issuer, at)
    try:
        verify_signed(signer, basic["signature_algorithm"], basic["signature"].native, data.dump())
    except SignatureInvalid as exc:
        raise OcspError(f"the signature of the OCSP response is invalid: {exc}") from None
    single = _single_response(data, issuer, serial)
    this_update: datetime = single["this_update"].native
    next_update: datetime | None = single["next_update"].native
    if this_update > at + CLOCK_SKEW:
        raise OcspError(
            f"the OCSP response is not valid yet (thisUpdate {this_update:%Y-%m-%d %H:%M:%S} UTC)"
        )
    if next_update is not None and next_update < at:
        raise OcspError(
            f"the OCSP response is stale (its nextUpdate was {next_update:%Y-%m-%d %H:%M:%S} UTC)"
        )
    _check_nonce(data, nonce, this_update, next_update, at, require_nonce)
    status = single["cert_status"]
    if status.name == "good":
        return OcspAnswer("good", None, None, this_update, next_update)
    if status.name == "revoked":
        info = status.chosen
        code = info["revocation_reason"].native
        return OcspAnswer(
            "revoked",
            info["revocation_time"].native.astimezone(UTC),
            REASON_NAMES.get(str(code), "unspecified") if code is not None else "unspecified",
            this_update,
            next_update,
        )
    return OcspAnswer("unknown", None, None, this_update, next_update)


def _signer(
    basic: ocsp.BasicOCSPResponse, issuer: x509.Certificate, at: datetime
) -> keys.PublicKeyInfo:
    """The key that must have signed the response: the CA's, or that of a delegated
    responder certificate the CA issued for OCSP signing."""
    responder = basic["tbs_response_data"]["responder_id"]
    issuer_key = issuer["tbs_certificate"]["subject_public_key_info"]
    if _is_responder(responder, issuer["tbs_certificate"]["subject"], issuer_key):
        return issuer_key
    issuer_name = _rfc4514(issuer["tbs_certificate"]["subject"])
    for candidate in basic["certs"] or []:
        tbs = candidate["tbs_certificate"]
        if not _is_responder(responder, tbs["subject"], tbs["subject_public_key_info"]):
            continue
        subject = _rfc4514(tbs["subject"])
        if tbs["issuer"] != issuer["tbs_certificate"]["subject"]:
            raise OcspError(
                f"the OCSP responder certificate {subject} was not issued by the CA {issuer_name}"
            )
        try:
            verify_signed(
                issuer_key,
                candidate["signature_algorithm"],
                candidate["signature_value"].native,
                tbs.dump(),
            )
        except SignatureInvalid:
            raise OcspError(
                f"the signature of the OCSP responder certificate {subject} does not verify"
            ) from None
        usages = candidate.extended_key_usage_value
        if usages is None or "ocsp_signing" not in usages.native:
            raise OcspError(
                f"the OCSP responder certificate {subject} lacks the OCSPSigning extended "
                "key usage, so the CA did not delegate OCSP to it"
            )
        validity = tbs["validity"]
        if not validity["not_before"].native <= at <= validity["not_after"].native:
            raise OcspError(f"the OCSP responder certificate {subject} is not valid now")
        key: keys.PublicKeyInfo = tbs["subject_public_key_info"]
        return key
    raise OcspError(
        "the OCSP response is signed by neither the CA "
        f"{issuer_name} nor a responder certificate it includes"
    )


def _is_responder(responder: ocsp.ResponderId, name: x509.Name, key: keys.PublicKeyInfo) -> bool:
    if responder.name == "by_name":
        return bool(responder.chosen == name)
    return bool(responder.chosen.native == _key_hash(key, "sha1"))


def _single_response(
    data: ocsp.ResponseData, issuer: x509.Certificate, serial: int
) -> ocsp.SingleResponse:
    public_key = issuer["tbs_certificate"]["subject_public_key_info"]
    for single in data["responses"]:
        cert_id = single["cert_id"]
        algorithm = cert_id["hash_algorithm"]["algorithm"].native
        if algorithm not in _HASHES:
            continue
        if (
            cert_id["serial_number"].native == serial
            and cert_id["issuer_name_hash"].native == _name_hash(issuer, algorithm)
            and cert_id["issuer_key_hash"].native == _key_hash(public_key, algorithm)
        ):
            return single
    raise OcspError("the OCSP response is for another certificate")


def _check_nonce(
    data: ocsp.ResponseData,
    nonce: bytes | None,
    this_update: datetime,
    next_update: datetime | None,
    at: datetime,
    require_nonce: bool,
) -> None:
    echoed: bytes | None = None
    for extension in data["response_extensions"] or []:
        if extension["extn_id"].native == "nonce":
            echoed = extension["extn_value"].contents
    if nonce is None:
        return
    if echoed is not None:
        if echoed not in (nonce, core.OctetString(nonce).dump()):
            raise OcspError("stale or replayed OCSP response (nonce does not match)")
        return
    if require_nonce:
        raise OcspError("the OCSP response carries no nonce")
    if next_update is None and at - this_update > FRESH_WITHOUT_NONCE:
        raise OcspError(
            "the OCSP response carries neither a nonce nor a nextUpdate and is older than "
            f"{FRESH_WITHOUT_NONCE.seconds // 60} minutes (possibly replayed)"
        )


def _name_hash(issuer: x509.Certificate, algorithm: str) -> bytes:
    return hashlib.new(algorithm, issuer["tbs_certificate"]["subject"].dump()).digest()


def _key_hash(public_key: keys.PublicKeyInfo, algorithm: str) -> bytes:
    """The hash of the subjectPublicKey BIT STRING's value (RFC 6960 4.1.1)."""
    return hashlib.new(algorithm, public_key["public_key"].contents[1:]).digest()


def issuer_key_hash(issuer_der: bytes) -> bytes:
    """SHA-1 of the CA's public key bits (the OCSP cache key's first half)."""
    issuer = _load_certificate(issuer_der, "the CA certificate")
    return _key_hash(issuer["tbs_certificate"]["subject_public_key_info"], "sha1")


def _load_certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        certificate = x509.Certificate.load(bytes(der), strict=True)
        certificate["tbs_certificate"].native  # noqa: B018
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise OcspError(f"{what} cannot be read: {exc}") from None
    return certificate


__all__ = [
    "MAX_OCSP_BYTES",
    "Fetch",
    "FetchError",
    "OcspAnswer",
    "OcspError",
    "http_fetch",
    "issuer_key_hash",
    "query",
]
