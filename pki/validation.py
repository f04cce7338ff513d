"""RFC 5280 path validation for the bridge: decoding certificates and CRLs given as
PEM or DER, bounded path building through cross-certificates, pyhanko-certvalidator's
section 6.1 processing (policies and policy mapping, policy constraints, inhibitAnyPolicy,
name constraints), revocation by the given CRLs and OCSP responses in the platform's
modes, SM2-with-SM3 signatures, and a reason a person can act on for every refusal.

Decision 30 (docs/decisions/0030-path-validation.md) explains the choices: why paths are
built here and not by pyhanko's builder, how the revocation modes map onto pyhanko's
CRL/OCSP processing, the bounds, and the SM2 hook.

Reasons never name the end-entity certificate by its subject (a subject may carry a
person's identity number); CA certificates are named by subject. ``path`` in the result
lists every subject, for the operator's ``idp pki verify``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Literal

from asn1crypto import algos, crl, keys, ocsp, pem, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from pyhanko_certvalidator import PKIXValidationParams, ValidationContext
from pyhanko_certvalidator._state import ValProcState
from pyhanko_certvalidator.authority import AuthorityWithCert, TrustAnchor
from pyhanko_certvalidator.errors import (
    CRLFetchError,
    CRLNoMatchesError,
    CRLValidationError,
    CRLValidationIndeterminateError,
    DisallowedAlgorithmError,
    ExpiredError,
    NotYetValidError,
    OCSPFetchError,
    OCSPNoMatchesError,
    OCSPValidationError,
    OCSPValidationIndeterminateError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers.api import FetchLimits
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.revinfo.validate_crl import verify_crl
from pyhanko_certvalidator.revinfo.validate_ocsp import verify_ocsp_response
from pyhanko_certvalidator.sig_validate import (
    DEFAULT_SIGNATURE_VALIDATOR,
    DEFAULT_VALIDATION_CONTEXT,
    SignatureValidationContext,
    SignatureValidator,
)
from pyhanko_certvalidator.util import ConsList, get_declared_revinfo
from pyhanko_certvalidator.validate import async_validate_path

from pki.reasons import (
    THE_CERTIFICATE,
    Reason,
    certificate,
    no_revocation_info,
    revocation_unknown,
    revoked,
)
from pki.signatures import SM2_WITH_SM3, SignatureInvalid, is_sm2_key, verify_signed

logger = logging.getLogger(__name__)

RevocationMode = Literal["off", "soft", "hard", "require"]
REVOCATION_MODES: tuple[RevocationMode, ...] = ("off", "soft", "hard", "require")

MAX_CERTIFICATES = 64  # certificates in one validation (leaf, anchors, intermediates)
MAX_CRLS = 64  # CRLs, and separately OCSP responses, in one validation
MAX_PATH_LENGTH = 10  # certificates below the trust anchor in one path
MAX_CANDIDATE_PATHS = 16  # complete candidate paths validated before giving up
MAX_BUILD_STEPS = 2000  # candidate issuers looked at while building paths
FETCH_TIMEOUT_SECONDS = 5.0
FETCH_LIMITS = FetchLimits(max_requests=32, max_cert_requests=8, max_aia_urls_per_object=4)

ANY_POLICY = "2.5.29.32.0"
_POLICY_NAMES = {"any_policy": ANY_POLICY}
_PYHANKO_MODES: dict[RevocationMode, str] = {
    "off": "none",
    "soft": "soft-fail",
    "hard": "hard-fail",
    "require": "require",
}
# asn1crypto's reason names -> RFC 5280's
REVOCATION_REASONS: dict[str, str] = {
    "unspecified": "unspecified",
    "key_compromise": "keyCompromise",
    "ca_compromise": "cACompromise",
    "affiliation_changed": "affiliationChanged",
    "superseded": "superseded",
    "cessation_of_operation": "cessationOfOperation",
    "certificate_hold": "certificateHold",
    "remove_from_crl": "removeFromCRL",
    "privilege_withdrawn": "privilegeWithdrawn",
    "aa_compromise": "aACompromise",
}
_PREFIX = "The path could not be validated because "
_POSITION = re.compile(r"(?:the )?(intermediate certificate (\d+)|end-entity certificate)")


class BadInput(Exception):
    """Input that cannot be decoded or is beyond the bounds: not a verdict on a
    certificate. ``reason`` is one line a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- Name comparison -------------------------------------------------------------------


def _cache_name_normalisation() -> None:
    """asn1crypto computes a name's normalised form (RFC 5280 7.1: LDAP string
    preparation of every attribute) again on each ``Name.hashable``, and pyhanko
    compares issuer and subject names a dozen times per path: a fifth of a warm
    validation. The normalised form depends only on the name's DER, so it is kept per
    DER (bounded). Installed once, for every ``asn1crypto.x509.Name``."""
    original = x509.Name.hashable
    if getattr(original.fget, "_idp_cached", False):
        return

    @lru_cache(maxsize=16384)
    def normalised(name_der: bytes) -> str:
        return str(original.fget(x509.Name.load(name_der)))

    def hashable(self: x509.Name) -> str:
        return normalised(self.dump())

    hashable._idp_cached = True  # type: ignore[attr-defined]
    x509.Name.hashable = property(hashable, doc=original.__doc__)


_cache_name_normalisation()


# --- Decoding ---------------------------------------------------------------------------


def load_certificates(data: bytes, *, limit: int = MAX_CERTIFICATES) -> list[bytes]:
    """PEM (one or several ``CERTIFICATE`` blocks; other blocks are skipped) or DER (one
    certificate) -> DER certificates, each fully decoded once. ``BadInput`` for empty
    input, garbage, truncated DER, trailing data, or more than ``limit`` certificates."""
    blocks = _blocks(data, ("CERTIFICATE",), limit, "certificate")
    for number, der in enumerate(blocks, 1):
        _certificate(der, f"certificate {number}" if len(blocks) > 1 else "the certificate")
    return blocks


def load_crls(data: bytes, *, limit: int = MAX_CRLS) -> list[bytes]:
    """PEM (``X509 CRL`` blocks) or DER (one CRL) -> DER CRLs; ``BadInput`` as for
    ``load_certificates``."""
    blocks = _blocks(data, ("X509 CRL",), limit, "CRL")
    for number, der in enumerate(blocks, 1):
        _crl(der, f"CRL {number}" if len(blocks) > 1 else "the CRL")
    return blocks


def subject_of(certificate_der: bytes) -> str:
    """The certificate's subject as RFC 4514 text (``cryptography``'s
    ``rfc4514_string``), for any certificate asn1crypto can read (also SM2 ones and
    ones ``cryptography`` would refuse for other fields)."""
    return _rfc4514(_certificate(certificate_der, "the certificate")["tbs_certificate"]["subject"])


def issuer_of(certificate_der: bytes) -> str:
    """The certificate's issuer as RFC 4514 text, as ``subject_of``."""
    return _rfc4514(_certificate(certificate_der, "the certificate")["tbs_certificate"]["issuer"])


def _blocks(data: bytes, kinds: Sequence[str], limit: int, what: str) -> list[bytes]:
    stripped = data.strip()
    if not stripped:
        raise BadInput(f"empty input: expected a {what} (PEM or DER)")
    if data[:1] == b"\x30" or not pem.detect(stripped):
        return [data]  # DER (a SEQUENCE), or garbage for the decoder to name
    count = stripped.count(b"-----BEGIN ")
    if count > limit:
        noun = what if limit == 1 else f"{what}s"
        raise BadInput(f"too many PEM blocks ({count}): at most {limit} {noun} accepted")
    try:
        armored = list(pem.unarmor(stripped, multiple=True))
    except (ValueError, TypeError) as exc:
        raise BadInput(f"the PEM data cannot be read: {exc}") from None
    found = [der for kind, _headers, der in armored if kind in kinds]
    if not found:
        others = ", ".join(sorted({kind for kind, _h, _d in armored})) or "none"
        raise BadInput(f"no {what} in the PEM data (blocks found: {others})")
    return found


def _certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        return _decoded_certificate(der)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadInput(f"{what} is not a valid X.509 certificate (PEM or DER): {exc}") from None


@lru_cache(maxsize=1024)
def _decoded_certificate(der: bytes) -> x509.Certificate:
    """The certificate, every field decoded once (asn1crypto decodes lazily, so garbage
    deep inside would otherwise surface in the middle of validation). Kept for the same
    bytes: a trust store validates against the same CAs again and again, and pyhanko
    reads certificates without changing them (asn1crypto's caches of computed values
    are idempotent)."""
    x509.Certificate.load(der, strict=True).native  # noqa: B018
    return x509.Certificate.load(der, strict=True)


def _crl(der: bytes, what: str) -> crl.CertificateList:
    try:
        certificate_list = crl.CertificateList.load(der, strict=True)
        tbs = certificate_list["tbs_cert_list"]
        for name in ("version", "signature", "issuer", "this_update", "next_update"):
            tbs[name].native  # noqa: B018 -- decode now; the entries are read lazily
        tbs["crl_extensions"].native  # noqa: B018
        len(tbs["revoked_certificates"])
        certificate_list["signature"]
    except (ValueError, TypeError, KeyError) as exc:
        raise BadInput(f"{what} is not a valid X.509 CRL (PEM or DER): {exc}") from None
    return certificate_list


def _ocsp(der: bytes, what: str) -> ocsp.OCSPResponse:
    try:
        response = ocsp.OCSPResponse.load(der, strict=True)
        response.native  # noqa: B018
    except (ValueError, TypeError, KeyError) as exc:
        raise BadInput(f"{what} is not a valid OCSP response (DER): {exc}") from None
    return response


@cache
def _name_template() -> x509.TbsCertificate:
    """A minimal TBS certificate that ``cryptography`` loads, to format any name with
    its RFC 4514 code (it is never signed or trusted)."""
    placeholder = x509.Name.build({"common_name": "placeholder"})
    return x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": 1,
            "signature": {"algorithm": "ed25519"},
            "issuer": placeholder,
            "validity": {
                "not_before": x509.Time({"utc_time": datetime(2000, 1, 1, tzinfo=UTC)}),
                "not_after": x509.Time({"utc_time": datetime(2000, 1, 2, tzinfo=UTC)}),
            },
            "subject": placeholder,
            "subject_public_key_info": keys.PublicKeyInfo(
                {"algorithm": {"algorithm": "ed25519"}, "public_key": bytes(32)}
            ),
        }
    )


def rfc4514(name: x509.Name) -> str:
    """An asn1crypto name as RFC 4514 text, as ``cryptography`` writes it."""
    return _rfc4514_of(name.dump())


_rfc4514 = rfc4514


@lru_cache(maxsize=4096)
def _rfc4514_of(name_der: bytes) -> str:
    name = x509.Name.load(name_der)
    try:
        return _rebuilt(name).rfc4514_string()
    except (ValueError, TypeError, KeyError):
        pass
    tbs = _name_template().copy()
    tbs["subject"] = name
    wrapper = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": "ed25519"},
            "signature_value": bytes(64),
        }
    )
    try:
        return cx509.load_der_x509_certificate(wrapper.dump()).subject.rfc4514_string()
    except ValueError:
        return str(x509.Name.load(name_der).human_friendly)


def _rebuilt(name: x509.Name) -> cx509.Name:
    """The name as ``cryptography`` objects, attribute by attribute (string values
    only; anything else raises and the caller formats it through a certificate)."""
    rdns = []
    for rdn in name.chosen:
        attributes = []
        for attribute in rdn:
            value = attribute["value"]
            text = value.chosen.native if isinstance(value, x509.DirectoryString) else value.native
            if not isinstance(text, str):
                raise TypeError("not a string attribute")
            attributes.append(
                cx509.NameAttribute(cx509.ObjectIdentifier(attribute["type"].dotted), text)
            )
        rdns.append(cx509.RelativeDistinguishedName(attributes))
    return cx509.Name(rdns)


# --- Options and result -----------------------------------------------------------------


@dataclass(frozen=True)
class ValidationOptions:
    anchors: tuple[bytes, ...]  # DER trust anchors
    intermediates: tuple[bytes, ...] = ()  # other certificates for path building
    crls: tuple[bytes, ...] = ()  # DER CRLs (RFC 5280 6.3 processing by pyhanko)
    ocsps: tuple[bytes, ...] = ()  # DER OCSP responses
    policies: frozenset[str] | None = None  # user-initial-policy-set (None: anyPolicy)
    require_explicit_policy: bool = False
    inhibit_policy_mapping: bool = False
    inhibit_any_policy: bool = False
    at: datetime | None = None  # validation time (None: now; naive: UTC)
    # off: no revocation check (CRLs ignored); soft: refuse only a known revocation;
    # hard: also refuse when revocation information is there (given, or named by the
    # certificate) but cannot be used; require: refuse unless a CRL or OCSP response
    # says good. None: soft when CRLs or OCSP responses are given, else off (the trust
    # store reads None as "as each CA is configured").
    revocation: RevocationMode | None = "off"
    allow_fetching: bool = False  # fetch CRLs / OCSP named by the certificates
    max_certificates: int = MAX_CERTIFICATES  # the trust store may allow more


@dataclass(frozen=True)
class ValidationResult:
    valid: bool
    reason: str  # "valid" or why not: one line a person can act on
    path: tuple[str, ...] = ()  # RFC 4514 subjects leaf -> anchor ((): no path found)
    certificates: tuple[bytes, ...] = ()  # DER, leaf -> anchor
    policies: frozenset[str] = field(default_factory=frozenset)  # in the anchor's domain


# --- Signatures -------------------------------------------------------------------------


class SignatureChecker(SignatureValidator):
    """pyhanko's signature hook: SM2-with-SM3 (and anything signed by an SM2 key)
    through ``pki.signatures.verify_signed`` (``pki.sm2``), everything else through
    pyhanko's default. Every failure is an ``InvalidSignature``, which pyhanko reports
    as a signature that does not verify."""

    def validate_signature(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: keys.PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext = DEFAULT_VALIDATION_CONTEXT,
    ) -> None:
        if signature_algorithm["algorithm"].dotted == SM2_WITH_SM3 or is_sm2_key(public_key_info):
            if context.prehashed:
                raise InvalidSignature("SM2 signatures cannot be checked over a digest")
            try:
                verify_signed(public_key_info, signature_algorithm, signature, signed_data)
            except SignatureInvalid as exc:
                raise InvalidSignature(str(exc)) from None
            return
        try:
            DEFAULT_SIGNATURE_VALIDATOR.validate_signature(
                signature, signed_data, public_key_info, signature_algorithm, context
            )
        except InvalidSignature:
            raise
        # pyhanko's default asserts that the key type matches the algorithm, and
        # cryptography refuses keys it does not know: both mean "does not verify".
        except (ValueError, TypeError, AssertionError, UnsupportedAlgorithm) as exc:
            raise InvalidSignature(f"the signature cannot be checked: {exc}") from None


SIGNATURE_CHECKER = SignatureChecker()


# --- Validation -------------------------------------------------------------------------


def validate(leaf: bytes, options: ValidationOptions) -> ValidationResult:
    """Build and validate a path from ``leaf`` (DER or PEM) to one of the anchors.
    Never raises for a certificate or CRL that fails; ``BadInput`` only for input that
    cannot be decoded or is beyond the bounds. Not for use inside a running event
    loop (it runs its own)."""
    inputs = _Inputs.decode(leaf, options)
    if not inputs.anchors:
        return ValidationResult(valid=False, reason="no trust anchor was given")
    return _loop().run_until_complete(_validate(inputs, options))


_LOOPS = threading.local()


class _ThreadLoop:
    """One thread's event loop, closed when the thread ends (its thread-local storage
    is dropped), so threads started per request leave no loop open."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        self.loop.close()


def _loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for pyhanko's coroutines, made once: ``asyncio.run``
    would build and tear one down per validation, a fifth of a warm validation's CPU.
    Validations run no tasks that outlive them, so a loop can be reused."""
    holder: _ThreadLoop | None = getattr(_LOOPS, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _ThreadLoop()
        _LOOPS.holder = holder
    return holder.loop


@dataclass(frozen=True)
class _Inputs:
    leaf: x509.Certificate
    anchors: list[x509.Certificate]
    intermediates: list[x509.Certificate]
    crls: list[crl.CertificateList]
    ocsps: list[ocsp.OCSPResponse]
    moment: datetime
    mode: RevocationMode

    @classmethod
    def decode(cls, leaf: bytes, options: ValidationOptions) -> _Inputs:
        count = 1 + len(options.anchors) + len(options.intermediates)
        if count > options.max_certificates:
            raise BadInput(
                f"too many certificates ({count}): at most {options.max_certificates} "
                "(leaf, anchors and intermediates) are accepted"
            )
        for what, items in (("CRLs", options.crls), ("OCSP responses", options.ocsps)):
            if len(items) > MAX_CRLS:
                raise BadInput(f"too many {what} ({len(items)}): at most {MAX_CRLS}")
        blocks = _blocks(leaf, ("CERTIFICATE",), MAX_CERTIFICATES, "certificate")
        if len(blocks) != 1:
            raise BadInput(f"expected one certificate to validate, found {len(blocks)}")
        mode = options.revocation
        if mode is None:
            mode = "soft" if options.crls or options.ocsps else "off"
        if mode not in REVOCATION_MODES:
            raise BadInput(
                f"unknown revocation mode {mode!r}: one of {', '.join(REVOCATION_MODES)}"
            )
        moment = options.at or datetime.now(UTC)
        if moment.utcoffset() is None:
            moment = moment.replace(tzinfo=UTC)
        return cls(
            leaf=_certificate(blocks[0], "the certificate"),
            anchors=[
                _certificate(der, f"trust anchor {n}") for n, der in enumerate(options.anchors, 1)
            ],
            intermediates=[
                _certificate(der, f"intermediate certificate {n}")
                for n, der in enumerate(options.intermediates, 1)
            ],
            crls=[_crl(der, f"CRL {n}") for n, der in enumerate(options.crls, 1)],
            ocsps=[_ocsp(der, f"OCSP response {n}") for n, der in enumerate(options.ocsps, 1)],
            moment=moment,
            mode=mode,
        )


async def _validate(inputs: _Inputs, options: ValidationOptions) -> ValidationResult:
    context = ValidationContext(
        trust_roots=inputs.anchors,
        other_certs=inputs.intermediates,
        moment=inputs.moment,
        revocation_mode="none",
        signature_validator=SIGNATURE_CHECKER,
    )
    params = PKIXValidationParams(
        user_initial_policy_set=frozenset(
            "any_policy" if oid == ANY_POLICY else oid
            for oid in (options.policies if options.policies is not None else {ANY_POLICY})
        ),
        initial_explicit_policy=options.require_explicit_policy,
        initial_policy_mapping_inhibit=options.inhibit_policy_mapping,
        initial_any_policy_inhibit=options.inhibit_any_policy,
    )
    builder = _PathBuilder(context)
    failures: list[tuple[ValidationPath, str]] = []
    for path in builder.paths(inputs.leaf):
        reason = await _check_path(context, path, params)
        if reason is None and inputs.mode != "off":
            reason = await _check_revocation_of_path(path, inputs, options)
        if reason is None:
            return _result(path, "valid")
        failures.append((path, reason))
        if len(failures) >= MAX_CANDIDATE_PATHS:
            break
    if not failures:
        return ValidationResult(valid=False, reason=builder.reason_for_no_path(inputs.leaf))
    # As pyhanko does: a bad signature usually means a candidate issuer with the same
    # name but another key, so another failure explains more.
    path, reason = next(((p, r) for p, r in failures if "signature" not in r), failures[0])
    return _result(path, reason, valid=False)


def _result(path: ValidationPath, reason: str, *, valid: bool = True) -> ValidationResult:
    chain = list(path.iter_certs(include_root=True))[::-1]
    policies: frozenset[str] = frozenset()
    if valid:
        qualified = path.qualified_policies() or frozenset()
        policies = frozenset(
            _POLICY_NAMES.get(item.user_domain_policy_id, item.user_domain_policy_id)
            for item in qualified
        )
    return ValidationResult(
        valid=valid,
        reason=reason,
        path=tuple(_rfc4514(cert.subject) for cert in chain),
        certificates=tuple(cert.dump() for cert in chain),
        policies=policies,
    )


async def _check_path(
    context: ValidationContext, path: ValidationPath, params: PKIXValidationParams
) -> str | None:
    try:
        await async_validate_path(context, path, params)
    except ValidationError as exc:
        return _reason(exc, path)
    except (ValueError, TypeError, LookupError, NotImplementedError) as exc:
        # asn1crypto decodes lazily and pyhanko's name constraint code raises these for
        # content it cannot process.
        logger.debug("path validation could not process a certificate", exc_info=exc)
        return f"a certificate of the path cannot be processed: {exc}"
    return None


# --- Path building ----------------------------------------------------------------------


class _PathBuilder:
    """Depth-first path building from the leaf up (RFC 4158 in its simplest form):
    every certificate whose subject (and key identifier) matches is a candidate issuer,
    trust anchors first; a certificate appears at most once in a path; a path holds at
    most ``MAX_PATH_LENGTH`` certificates below the anchor; at most ``MAX_BUILD_STEPS``
    candidate issuers are looked at in all. Paths are yielded as they are found, so the
    caller validates each before the next is built. Lookups are local (issuers are not
    fetched), so this is a plain generator."""

    def __init__(self, context: ValidationContext) -> None:
        self.registry = context.certificate_registry
        self.trust = context.path_builder.trust_manager
        self.steps = 0
        self.exhausted = False
        self.too_long = False
        self.looped: list[x509.Certificate] = []
        self.missing_issuer: x509.Certificate | None = None

    def paths(self, leaf: x509.Certificate) -> Iterator[ValidationPath]:
        anchor = self.trust.as_trust_anchor(AuthorityWithCert(leaf))
        if anchor is not None:
            yield ValidationPath(anchor, [], None)
            return
        yield from self._walk([leaf], {leaf.issuer_serial})

    def _walk(self, chain: list[x509.Certificate], seen: set[bytes]) -> Iterator[ValidationPath]:
        head = chain[-1]
        candidates = list(self.registry.find_potential_issuers(head, self.trust))
        if not candidates and self.missing_issuer is None:
            self.missing_issuer = head
        for issuer in candidates:
            self.steps += 1
            if self.steps > MAX_BUILD_STEPS:
                self.exhausted = True
                return
            if isinstance(issuer, TrustAnchor):
                yield ValidationPath(issuer, chain[:0:-1], chain[0])
                continue
            if issuer.issuer_serial in seen:
                self.looped.extend(chain[1:] or [issuer])
                continue
            if len(chain) >= MAX_PATH_LENGTH:
                self.too_long = True
                continue
            yield from self._walk([*chain, issuer], seen | {issuer.issuer_serial})
            if self.exhausted:
                return

    def reason_for_no_path(self, leaf: x509.Certificate) -> str:
        if self.exhausted:
            return Reason(
                "no path to a trust anchor: path building stopped after %(steps)s candidate "
                "issuers (too many cross-certificates with the same names)",
                steps=str(MAX_BUILD_STEPS),
            )
        if self.missing_issuer is not None:
            holder = self.missing_issuer
            who = certificate() if holder is leaf else certificate(_rfc4514(holder.subject))
            if holder is leaf and leaf.self_signed in {"yes", "maybe"}:
                return Reason("the certificate is self-signed and is not one of the trust anchors")
            return Reason(
                "no path to a trust anchor: no trust anchor or intermediate certificate is the "
                "issuer %(issuer)s of %(who)s",
                issuer=_rfc4514(holder.issuer),
                who=who,
            )
        if self.looped:
            names = sorted({_rfc4514(cert.subject) for cert in self.looped})
            return Reason(
                "no path to a trust anchor: the cross-certificates form a loop that reaches no "
                "anchor (%(names)s)",
                names="; ".join(names),
            )
        if self.too_long:
            return Reason(
                "no path to a trust anchor within %(length)s certificates below the anchor",
                length=str(MAX_PATH_LENGTH),
            )
        return Reason("no path to a trust anchor")


# --- Revocation -------------------------------------------------------------------------


async def _check_revocation_of_path(
    path: ValidationPath, inputs: _Inputs, options: ValidationOptions
) -> str | None:
    """Revocation of every certificate below the anchor, from the top down, by the
    given CRLs / OCSP responses (and fetched ones when allowed), decided by the mode."""
    backend = (
        RequestsFetcherBackend(per_request_timeout=FETCH_TIMEOUT_SECONDS, limits=FETCH_LIMITS)
        if options.allow_fetching
        else None
    )
    context = ValidationContext(
        trust_roots=inputs.anchors,
        other_certs=inputs.intermediates,
        moment=inputs.moment,
        crls=inputs.crls,
        ocsps=inputs.ocsps,
        allow_fetching=options.allow_fetching,
        fetcher_backend=backend,
        revocation_mode=_PYHANKO_MODES[inputs.mode],
        signature_validator=SIGNATURE_CHECKER,
    )
    # The CAs of this path are validated already and their own revocation is decided
    # here, by this mode: a CRL they issued needs no second validation of their path.
    for index in range(1, path.pkix_len):
        prefix = ValidationPath(path.trust_anchor, [path[i] for i in range(1, index)], path[index])
        context.record_validation(path[index], prefix)  # type: ignore[no-untyped-call]
    try:
        for index in range(1, path.pkix_len + 1):
            reason = await _revocation_of(path, index, context, inputs.mode)
            if reason is not None:
                return reason
    finally:
        if backend is not None:
            await backend.close()  # type: ignore[no-untyped-call]
    return None


async def _revocation_of(
    path: ValidationPath, index: int, context: ValidationContext, mode: RevocationMode
) -> str | None:
    cert = path[index]
    who = _who(path, index)
    state = ValProcState(cert_path_stack=ConsList.sing(path), init_index=index)
    declared_crl, declared_ocsp = get_declared_revinfo(cert)
    failures: list[str] = []
    try:
        await verify_ocsp_response(cert, path, context, proc_state=state)
    except RevokedError as exc:
        return _revoked(exc, who)
    except OCSPNoMatchesError:
        pass
    except OCSPValidationIndeterminateError as exc:
        failures.extend(_failure_texts(exc.failures) or [exc.msg])
    except (OCSPFetchError, OCSPValidationError) as exc:
        failures.append(f"OCSP: {exc}")
    else:
        return None
    try:
        await verify_crl(cert, path, context, proc_state=state)
    except RevokedError as exc:
        return _revoked(exc, who)
    except CRLNoMatchesError:
        pass
    except CRLValidationIndeterminateError as exc:
        failures.extend(_failure_texts(exc.failures) or [exc.msg])
    except (CRLFetchError, CRLValidationError) as exc:
        failures.append(str(exc) or type(exc).__name__)
    else:
        return None
    detail = f": {'; '.join(dict.fromkeys(failures))}" if failures else ""
    if mode == "require":
        return no_revocation_info(who, detail)
    if mode == "hard" and failures:
        return revocation_unknown(who, detail)
    if mode == "hard" and (declared_crl or declared_ocsp):
        return Reason(
            "no CRL or OCSP response for %(who)s, which names where to find them "
            "(revocation mode hard)",
            who=who,
        )
    return None


def _failure_texts(failures: Sequence[object]) -> list[str]:
    texts = []
    for failure in failures:
        text = failure[0] if isinstance(failure, tuple) and failure else failure
        texts.append(str(text).rstrip("."))
    return texts


def _revoked(exc: RevokedError, who: str) -> str:
    code = exc.reason.native if exc.reason is not None else "unspecified"
    source = "OCSP" if str(exc).startswith("OCSP") else "CRL"
    return revoked(who, exc.revocation_dt, REVOCATION_REASONS.get(str(code), str(code)), source)


# --- Reasons ----------------------------------------------------------------------------


def _who(path: ValidationPath, index: int) -> str:
    if index >= path.pkix_len and path.pkix_len > 0:
        return certificate()
    if index <= 0:
        return certificate(_rfc4514(path.trust_anchor.authority.name), anchor=True)
    return certificate(_rfc4514(path[index].subject))


def _position(message: str, path: ValidationPath) -> tuple[int | None, str]:
    match = _POSITION.search(message)
    if match is None:
        return None, message
    index = path.pkix_len if match.group(2) is None else int(match.group(2))
    return index, message[: match.start()] + _who(path, index) + message[match.end() :]


def _reason(exc: ValidationError, path: ValidationPath) -> str:  # noqa: PLR0911
    message = str(exc)
    index, named = _position(message, path)
    who = _who(path, index) if index is not None else Reason("a certificate of the path")
    named = named.removeprefix(_PREFIX).rstrip(".")
    if isinstance(exc, ExpiredError):
        at = f"{exc.expired_dt.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        return Reason("%(who)s expired on %(at)s UTC", who=who, at=at)
    if isinstance(exc, NotYetValidError):
        at = f"{exc.valid_from.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        return Reason("%(who)s is not valid before %(at)s UTC", who=who, at=at)
    if isinstance(exc, RevokedError):
        return _revoked(exc, who)
    if isinstance(exc, DisallowedAlgorithmError):
        mechanism = re.search(r"mechanism (\S+?)\.?(?:\s|$)", message)
        algorithm = f" ({mechanism.group(1)})" if mechanism else ""
        return Reason(
            "the signature of %(who)s uses an algorithm that is not accepted%(algorithm)s",
            who=who,
            algorithm=algorithm,
        )
    if not isinstance(exc, PathValidationError):
        return named
    if "signature" in message and ("could not be verified" in message or "do not match" in message):
        return Reason("the signature of %(who)s does not verify", who=who)
    if "no valid set of policies" in message:
        return Reason(
            "no acceptable certificate policy (the valid policy set is empty at %(who)s)", who=who
        )
    if "issuer name could not be matched" in message:
        return Reason(
            "the issuer name of %(who)s does not match the subject of its issuer", who=who
        )
    permitted = message.startswith(f"{_PREFIX}not all names of")
    if permitted or message.startswith(f"{_PREFIX}some names of"):
        detail = "" if who == THE_CERTIFICATE else f" ({named.rsplit('. ', 1)[-1]})"
        if permitted:
            return Reason(
                "a name of %(who)s is outside the permitted subtrees of the name "
                "constraints%(detail)s",
                who=who,
                detail=detail,
            )
        return Reason(
            "a name of %(who)s is inside the excluded subtrees of the name constraints%(detail)s",
            who=who,
            detail=detail,
        )
    if "maximum path length" in message:
        return Reason("the path is longer than a CA's pathLenConstraint allows")
    if message.endswith("is not a CA"):
        return Reason(
            "%(who)s is not a CA certificate (basicConstraints) but issued a certificate", who=who
        )
    if "not allowed to sign certificates" in message:
        return Reason("%(who)s may not sign certificates (its keyUsage lacks keyCertSign)", who=who)
    if "unsupported critical extension" in message:
        return Reason(
            "%(who)s carries an unsupported critical extension: %(extension)s",
            who=who,
            extension=named.rsplit(": ", 1)[-1],
        )
    return named


__all__ = [
    "ANY_POLICY",
    "MAX_CERTIFICATES",
    "REVOCATION_MODES",
    "REVOCATION_REASONS",
    "BadInput",
    "RevocationMode",
    "SignatureChecker",
    "ValidationOptions",
    "ValidationResult",
    "issuer_of",
    "load_certificates",
    "load_crls",
    "rfc4514",
    "subject_of",
    "validate",
]
