"""Who a certificate names: a person's document number or an organisation's unified
social credit code, found by the identity rules configured for its CA (issue 11,
decision 32).

A rule is ``KIND:SOURCE``: ``KIND`` ``person`` or ``organisation``; ``SOURCE`` an
extension (``ext:OID``: GM/T 0015 carries the identity number under
``1.2.156.10260.4.1.1`` and the credit code under ``1.2.156.10260.4.1.4`` or
``1.2.156.10260.4.4``, by vendor and version) or a subject attribute
(``subject:serialNumber``, ``subject:organizationIdentifier``, ``subject:CN``).

Rules are tried in order and the first whose source the certificate carries decides:
if its value is not a valid identifier of the rule's kind the certificate is refused,
and later rules are not tried (a CA that put a wrong number in the first place it
names must not be rescued by a weaker field further down). The value must pass
``accounts.identifiers``; nothing here logs or puts into a reason the full number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final, Literal, cast, get_args

from asn1crypto import parser
from cryptography import x509
from cryptography.x509.oid import NameOID

from accounts import identifiers
from config.fields import oid as checked_oid
from pki.reasons import Reason

IdentityKind = Literal["person", "organisation"]

# GM/T 0015-2012: IdentityCode (a person's document), OrganizationCode (organisation
# code, where most vendors put the credit code since GB 32100-2015); GM/T 0015-2023:
# the resident identity card number and the unified social credit code.
GMT0015_IDENTITY_NUMBER: Final = "1.2.156.10260.4.1.1"
GMT0015_ORGANIZATION_CODE: Final = "1.2.156.10260.4.1.4"
GMT0015_RESIDENT_ID_2023: Final = "1.2.156.10260.4.1.1.1"
GMT0015_CREDIT_CODE_2023: Final = "1.2.156.10260.4.4"

SUBJECT_ATTRIBUTES: Final[dict[str, x509.ObjectIdentifier]] = {
    "serialNumber": NameOID.SERIAL_NUMBER,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
    "CN": NameOID.COMMON_NAME,
}
USAGE: Final = (
    "an identity rule is KIND:SOURCE, KIND person or organisation, SOURCE ext:OID "
    "(e.g. ext:1.2.156.10260.4.1.1), subject:serialNumber, "
    "subject:organizationIdentifier or subject:CN"
)

_KINDS: Final = get_args(IdentityKind)
_PERSON_TYPES: Final = frozenset(get_args(identifiers.Kind)) - {"uscc", "mobile", "unknown"}
_MAX_VALUE_BYTES: Final = 1024  # an identity extension holds one short string
_MAX_IDENTIFIER: Final = 64


@dataclass(frozen=True)
class IdentityRule:
    """Where one CA's certificates carry the identity, and of whom (text ``KIND:SOURCE``).
    Built directly or with ``parse``, it is checked either way (``ValueError``)."""

    kind: IdentityKind
    source: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown kind {_shown(self.kind)}: {USAGE}")
        where, colon, what = self.source.partition(":")
        if where == "subject" and what in SUBJECT_ATTRIBUTES:
            return
        if where == "ext" and colon:
            try:
                checked_oid(what)
            except ValueError as exc:
                raise ValueError(f"{_shown(self.source)}: the OID {exc}; {USAGE}") from None
            return
        raise ValueError(f"unknown source {_shown(self.source)}: {USAGE}")

    @classmethod
    def parse(cls, text: str) -> IdentityRule:
        """``person:ext:1.2.156.10260.4.1.1`` and the like; ``ValueError`` saying the
        usage otherwise."""
        kind, colon, source = text.strip().partition(":")
        if not colon or kind not in _KINDS:
            raise ValueError(f"{_shown(text)}: {USAGE}")
        return cls(cast(IdentityKind, kind), source)

    def __str__(self) -> str:
        return f"{self.kind}:{self.source}"

    @property
    def extension_oid(self) -> str | None:
        where, _, what = self.source.partition(":")
        return what if where == "ext" else None

    @property
    def subject_attribute(self) -> str | None:
        where, _, what = self.source.partition(":")
        return what if where == "subject" else None


# Used when a CA is registered without rules. A person's GM/T 0015 number comes before
# the organisation's credit code: an employee's certificate carries both, and must never
# sign in the organisation. subject:organizationIdentifier is left out: under ETSI EN
# 319 412 a natural person's certificate may carry the organisation it works for there.
DEFAULT_RULES: Final[tuple[IdentityRule, ...]] = (
    IdentityRule("person", f"ext:{GMT0015_RESIDENT_ID_2023}"),
    IdentityRule("person", f"ext:{GMT0015_IDENTITY_NUMBER}"),
    IdentityRule("organisation", f"ext:{GMT0015_CREDIT_CODE_2023}"),
    IdentityRule("organisation", f"ext:{GMT0015_ORGANIZATION_CODE}"),
    IdentityRule("person", "subject:serialNumber"),
)


@dataclass(frozen=True)
class CertificateIdentity:
    """The identity a certificate names. ``identifier`` is the full normalised number:
    compare and store it (blind-indexed), never log or show it (``masked``)."""

    kind: IdentityKind
    identifier_type: str  # accounts.identifiers' kind: resident_id, uscc, ...
    identifier: str = field(repr=False)
    rule: IdentityRule

    @property
    def masked(self) -> str:
        return identifiers.mask(self.identifier)


class IdentityRefused(Exception):
    """The certificate names no identity that may sign in; ``reason`` is one line a
    person can act on (a ``Reason``: pages say it in the reader's language), and never
    holds the full number."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason = reason


def extract_identity(
    certificate_der: bytes, rules: Sequence[IdentityRule], *, today: date | None = None
) -> CertificateIdentity:
    """The identity named by the first of ``rules`` (``DEFAULT_RULES`` when empty) whose
    source the certificate carries; ``today`` is for the birth-date check.
    ``IdentityRefused`` when that value is not a valid identifier of the rule's kind,
    or when no rule's source is present."""
    certificate = _load(certificate_der)
    for rule in rules or DEFAULT_RULES:
        values = _values(certificate, rule)
        if values:
            return _identity(rule, values, today)
    raise IdentityRefused(Reason("the certificate carries no identity the CA's rules name"))


def _load(data: bytes) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise IdentityRefused(
            Reason("the certificate cannot be read (not an X.509 certificate)")
        ) from None


def _values(certificate: x509.Certificate, rule: IdentityRule) -> list[str | bytes]:
    """The raw values of the rule's source in the certificate: extension values as DER,
    subject attributes as text; empty when the source is absent."""
    oid = rule.extension_oid
    try:
        if oid is not None:
            return [
                extension.value.public_bytes()
                for extension in certificate.extensions
                if extension.oid.dotted_string == oid
            ]
        attribute = SUBJECT_ATTRIBUTES[str(rule.subject_attribute)]
        return [str(item.value) for item in certificate.subject.get_attributes_for_oid(attribute)]
    except ValueError:
        if oid is not None:
            raise IdentityRefused(Reason("the certificate's extensions cannot be read")) from None
        raise IdentityRefused(Reason("the certificate's subject cannot be read")) from None


# --- the value ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    value: str
    choice: str | None = None  # the GM/T 0015 IdentifyCode alternative, when tagged


_CHOICES: Final = {0: "residenterCardNumber", 1: "militaryOfficerCardNumber", 2: "passportNumber"}
_IMPLICIT_TYPES: Final = {0: 19, 1: 12, 2: 19}  # PrintableString, UTF8String
_STRING_CODECS: Final = {
    12: "utf-8",  # UTF8String
    18: "ascii",  # NumericString
    19: "ascii",  # PrintableString
    20: "latin-1",  # TeletexString (T.61; the Latin subset CAs use)
    22: "ascii",  # IA5String
    26: "ascii",  # VisibleString
    28: "utf-32-be",  # UniversalString
    30: "utf-16-be",  # BMPString
}
_UNIVERSAL, _CONTEXT = 0, 2
_PRIMITIVE, _CONSTRUCTED = 0, 1
_SEQUENCE = 16


class _Unreadable(Exception):
    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason = reason


def _decode_extension(der: bytes) -> _Text:
    """A DER string; a GM/T 0015 ``IdentifyCode`` (``[0]`` residenterCardNumber, ``[1]``
    militaryOfficerCardNumber, ``[2]`` passportNumber; the standard does not say
    IMPLICIT or EXPLICIT and CAs write both); or a SEQUENCE holding one of those."""
    if len(der) > _MAX_VALUE_BYTES:
        raise _Unreadable(Reason("the extension's value is too long for an identity"))
    class_, method, tag, contents = _tlv(der)
    if (class_, method, tag) == (_UNIVERSAL, _CONSTRUCTED, _SEQUENCE):
        if not contents:
            raise _Unreadable(Reason("the extension holds an empty SEQUENCE"))
        class_, method, tag, contents = _tlv(contents, inside=Reason("the SEQUENCE"))
    if class_ == _UNIVERSAL and method == _PRIMITIVE and tag in _STRING_CODECS:
        return _Text(_string(tag, contents))
    if class_ == _CONTEXT and tag in _CHOICES:
        if method == _PRIMITIVE:  # IMPLICIT
            return _Text(_string(_IMPLICIT_TYPES[tag], contents), _CHOICES[tag])
        class_, method, inner, contents = _tlv(contents, inside=f"[{tag}]")
        if class_ == _UNIVERSAL and method == _PRIMITIVE and inner in _STRING_CODECS:
            return _Text(_string(inner, contents), _CHOICES[tag])
        raise _Unreadable(Reason("%(choice)s holds no string", choice=f"[{tag}] {_CHOICES[tag]}"))
    raise _Unreadable(
        Reason(
            "the extension holds neither a string nor a GM/T 0015 IdentifyCode (found %(found)s)",
            found=_describe(class_, method, tag),
        )
    )


def _tlv(data: bytes, *, inside: str = "") -> tuple[int, int, int, bytes]:
    """One DER element filling ``data`` exactly: (class, method, tag, contents);
    ``inside`` names the element that holds it."""
    try:
        class_, method, tag, _header, contents, trailer = parser.parse(data, strict=True)
    except ValueError:
        if not inside:
            raise _Unreadable(Reason("the extension's value is not DER")) from None
        if _parses_prefix(data):
            raise _Unreadable(
                Reason(
                    "the extension's value is more than one element inside %(part)s", part=inside
                )
            ) from None
        raise _Unreadable(
            Reason("the extension's value is not DER inside %(part)s", part=inside)
        ) from None
    if trailer:
        if not inside:
            raise _Unreadable(Reason("the extension's value is not DER (indefinite length)"))
        raise _Unreadable(
            Reason(
                "the extension's value is not DER inside %(part)s (indefinite length)", part=inside
            )
        )
    return int(class_), int(method), int(tag), bytes(contents)


def _parses_prefix(data: bytes) -> bool:
    try:
        parser.parse(data)
    except ValueError:
        return False
    return True


def _string(tag: int, contents: bytes) -> str:
    try:
        return contents.decode(_STRING_CODECS[tag])
    except UnicodeDecodeError:
        raise _Unreadable(
            Reason(
                "the extension's %(type)s is not validly encoded",
                type=_describe(_UNIVERSAL, _PRIMITIVE, tag),
            )
        ) from None


_UNIVERSAL_NAMES: Final = {
    1: "a BOOLEAN",
    2: "an INTEGER",
    3: "a BIT STRING",
    4: "an OCTET STRING",
    5: "NULL",
    6: "an OBJECT IDENTIFIER",
    12: "a UTF8String",
    16: "a SEQUENCE",
    17: "a SET",
    18: "a NumericString",
    19: "a PrintableString",
    20: "a TeletexString",
    22: "an IA5String",
    23: "a UTCTime",
    24: "a GeneralizedTime",
    26: "a VisibleString",
    28: "a UniversalString",
    30: "a BMPString",
}


def _describe(class_: int, method: int, tag: int) -> str:
    if class_ == _UNIVERSAL:
        return _UNIVERSAL_NAMES.get(tag, f"universal tag {tag}")
    name = {1: "application", 2: "context", 3: "private"}[class_]
    form = "constructed" if method == _CONSTRUCTED else "primitive"
    return f"{name} tag [{tag}] ({form})"


# ETSI EN 319 412-1 semantics identifiers: 3 letters, a country code, "-", the number.
_ETSI: Final = re.compile(r"([A-Z]{3})([A-Z]{2})-(.*)", re.DOTALL)
_ETSI_PERSON: Final = frozenset({"IDC", "PNO", "TIN", "TAX"})
_ETSI_ORGANISATION: Final = frozenset({"NTR", "VAT"})
_ETSI_NAMES: Final = {
    "PAS": Reason("a passport number"),
    "PSD": Reason("a payment-services authorisation number"),
    "LEI": Reason("a legal entity identifier"),
}


def _identity(
    rule: IdentityRule, values: list[str | bytes], today: date | None
) -> CertificateIdentity:
    source = rule.source
    if len(values) > 1:
        raise IdentityRefused(
            Reason(
                "%(source)s: the certificate carries %(count)s values; the CA's rule needs one",
                source=source,
                count=str(len(values)),
            )
        )
    raw = values[0]
    if isinstance(raw, bytes):
        try:
            text = _decode_extension(raw)
        except _Unreadable as exc:
            raise IdentityRefused(
                Reason("%(source)s: %(problem)s", source=source, problem=exc.reason)
            ) from None
        _check_choice(rule, text.choice)
        value = text.value
    else:
        value = raw
    value = value.strip().upper()
    if rule.subject_attribute in ("serialNumber", "organizationIdentifier"):
        value = _without_etsi_prefix(rule, value)
    if not value:
        raise IdentityRefused(Reason("%(source)s: the value is empty", source=source))
    if len(value) > _MAX_IDENTIFIER:
        raise IdentityRefused(
            Reason("%(source)s: the value is too long to be an identifier", source=source)
        )
    identifier_type, normalised = _checked(rule, value, today)
    return CertificateIdentity(rule.kind, identifier_type, normalised, rule)


def _check_choice(rule: IdentityRule, choice: str | None) -> None:
    if choice is None:
        return
    if rule.kind == "organisation":
        raise IdentityRefused(
            Reason(
                "%(source)s: holds a person's GM/T 0015 IdentifyCode (%(choice)s), "
                "not an organisation's credit code",
                source=rule.source,
                choice=choice,
            )
        )
    if choice != "residenterCardNumber":
        raise IdentityRefused(
            Reason(
                "%(source)s: holds a %(choice)s, which the platform cannot check; "
                "only resident ID and permit numbers sign in",
                source=rule.source,
                choice=choice,
            )
        )


def _without_etsi_prefix(rule: IdentityRule, value: str) -> str:
    match = _ETSI.fullmatch(value)
    if match is None:
        return value
    semantics, country, number = match.groups()
    expected = _ETSI_PERSON if rule.kind == "person" else _ETSI_ORGANISATION
    if semantics not in expected:
        other = _ETSI_ORGANISATION if rule.kind == "person" else _ETSI_PERSON
        if semantics in other and rule.kind == "person":
            what = Reason("an organisation's identifier")
        elif semantics in other:
            what = Reason("a person's identifier")
        else:
            what = _ETSI_NAMES.get(semantics) or Reason("an unknown kind of identifier")
        raise IdentityRefused(
            Reason(
                "%(source)s: %(prefix)s- names %(what)s",
                source=rule.source,
                prefix=f"{semantics}{country}",
                what=what,
            )
        )
    if country != "CN":
        raise IdentityRefused(
            Reason(
                "%(source)s: the identifier was issued in %(country)s; only Chinese ones sign in",
                source=rule.source,
                country=country,
            )
        )
    return number.strip()


_PROBLEMS: Final = {
    "bad_length": Reason("wrong length"),
    "bad_characters": Reason("characters no identifier of this kind uses"),
    "unknown_address_code": Reason("unknown address code"),
    "unknown_province_code": Reason("unknown province code"),
    "bad_birth_date": Reason("impossible birth date"),
    "future_birth_date": Reason("birth date in the future"),
    "bad_checksum": Reason("check character wrong"),
    "bad_organisation_code": Reason("the organisation code inside it is malformed"),
    "bad_organisation_code_checksum": Reason(
        "the organisation code inside it has a wrong check character"
    ),
    identifiers.CONFIRM_WITH_REGISTRY: Reason(
        "check character wrong (some early pilot codes fail it: confirm the code with the registry)"
    ),
}


def _checked(rule: IdentityRule, value: str, today: date | None) -> tuple[str, str]:
    """(identifier type, normalised value), or ``IdentityRefused`` naming the rule."""
    if rule.kind == "person":
        result = identifiers.check(value, expect="person_id", today=today)
        if result["valid"] and result["kind"] in _PERSON_TYPES:
            return str(result["kind"]), str(result["normalized"])
        if identifiers.check_uscc(value).valid:
            raise IdentityRefused(
                Reason(
                    "%(source)s: an organisation's credit code, not a person's document number",
                    source=rule.source,
                )
            )
    else:
        result = identifiers.check(value, expect="uscc")
        if result["valid"]:
            return str(result["kind"]), str(result["normalized"])
        person = identifiers.check(value, expect="person_id", today=today)
        if person["valid"]:
            raise IdentityRefused(
                Reason(
                    "%(source)s: a person's document number, not an organisation's credit code",
                    source=rule.source,
                )
            )
    problem = str(result["reason"])
    described = _PROBLEMS.get(problem) or Reason(problem.replace("_", " "))
    raise IdentityRefused(Reason("%(source)s: %(problem)s", source=rule.source, problem=described))


def _shown(text: str) -> str:
    """Operator input quoted in a message, cut short."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


__all__ = [
    "DEFAULT_RULES",
    "GMT0015_CREDIT_CODE_2023",
    "GMT0015_IDENTITY_NUMBER",
    "GMT0015_ORGANIZATION_CODE",
    "GMT0015_RESIDENT_ID_2023",
    "USAGE",
    "CertificateIdentity",
    "IdentityKind",
    "IdentityRefused",
    "IdentityRule",
    "extract_identity",
]
