"""Identity extraction: which rule decides, each encoding real CAs use, and refusals that
say why without repeating the number."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from accounts.identifiers import id_check_char, mask
from pki.identity import (
    DEFAULT_RULES,
    GMT0015_CREDIT_CODE_2023,
    GMT0015_IDENTITY_NUMBER,
    GMT0015_ORGANIZATION_CODE,
    GMT0015_RESIDENT_ID_2023,
    USAGE,
    IdentityRefused,
    IdentityRule,
    extract_identity,
)
from tests.pki.certs import Issued, make_ca, make_leaf, printable_string, utf8_string

PERSON = "11010519491231002X"
OTHER_PERSON = "110105194912310038"
USCC = "91110000600037341L"
HONG_KONG = "810000199408230021"
FOREIGNER = "931156199001010014"
FOREIGNER_2004 = "USA118501010001"
BAD_CHECK = "110105194912310021"  # PERSON with a wrong check character
BAD_USCC = "91110000600037341M"

ID_EXT = f"ext:{GMT0015_IDENTITY_NUMBER}"
ORG_EXT = f"ext:{GMT0015_ORGANIZATION_CODE}"


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Identity Test CA")


def rule(text: str) -> IdentityRule:
    return IdentityRule.parse(text)


def tlv(tag: int, contents: bytes) -> bytes:
    """One DER element (long-form length when needed)."""
    if len(contents) < 128:
        return bytes([tag, len(contents)]) + contents
    size = len(contents).to_bytes((len(contents).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents


def with_extension(ca: Issued, value: bytes, oid: str = GMT0015_IDENTITY_NUMBER) -> bytes:
    return make_leaf(ca, identity_extensions=[(oid, value)]).der


def refusal(certificate: bytes, rules: list[IdentityRule], **kwargs: date) -> str:
    with pytest.raises(IdentityRefused) as caught:
        extract_identity(certificate, rules, **kwargs)
    return caught.value.reason


# --- rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "person:ext:1.2.156.10260.4.1.1",
        "organisation:ext:1.2.156.10260.4.4",
        "person:subject:serialNumber",
        "organisation:subject:organizationIdentifier",
        "person:subject:CN",
    ],
)
def test_a_rule_reads_back_as_written(text: str) -> None:
    parsed = IdentityRule.parse(text)
    assert str(parsed) == text
    assert IdentityRule.parse(f"  {text}\n") == parsed


def test_a_rule_names_its_extension_or_attribute() -> None:
    assert rule("person:ext:1.2.156.10260.4.1.1").extension_oid == GMT0015_IDENTITY_NUMBER
    assert rule("person:ext:1.2.156.10260.4.1.1").subject_attribute is None
    assert rule("person:subject:CN").subject_attribute == "CN"
    assert rule("person:subject:CN").extension_oid is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "person",
        "people:subject:CN",
        "Person:subject:CN",
        "person:subject:serialnumber",
        "person:subject:O",
        "person:ext:",
        "person:ext:banana",
        "person:ext:1.99.3",
        "person:san:1.2.3",
        "organisation:" + "x" * 500,
    ],
)
def test_a_malformed_rule_is_refused_with_the_usage(text: str) -> None:
    with pytest.raises(ValueError, match="KIND:SOURCE") as caught:
        IdentityRule.parse(text)
    assert len(str(caught.value)) < 400


def test_a_rule_built_directly_is_checked_too() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        IdentityRule("person", "subject:givenName")
    with pytest.raises(ValueError, match="unknown kind"):
        IdentityRule("company", "subject:CN")  # type: ignore[arg-type]


def test_the_default_rules_put_the_person_first_and_skip_organization_identifier() -> None:
    assert [str(r) for r in DEFAULT_RULES] == [
        f"person:ext:{GMT0015_RESIDENT_ID_2023}",
        f"person:ext:{GMT0015_IDENTITY_NUMBER}",
        f"organisation:ext:{GMT0015_CREDIT_CODE_2023}",
        f"organisation:ext:{GMT0015_ORGANIZATION_CODE}",
        "person:subject:serialNumber",
    ]
    assert "KIND:SOURCE" in USAGE


def test_no_rules_means_the_default_rules(ca: Issued) -> None:
    found = extract_identity(with_extension(ca, utf8_string(PERSON)), [])
    assert found.rule == rule(f"person:{ID_EXT}")


def test_an_employee_certificate_signs_in_the_person_under_the_default_rules(
    ca: Issued,
) -> None:
    # an employee's certificate carries the enterprise's code too: it must never
    # sign in the organisation
    leaf = make_leaf(
        ca,
        identity_extensions=[
            (GMT0015_ORGANIZATION_CODE, printable_string(USCC)),
            (GMT0015_IDENTITY_NUMBER, printable_string(PERSON)),
        ],
    )
    found = extract_identity(leaf.der, [])
    assert (found.kind, found.identifier) == ("person", PERSON)


# --- sources ----------------------------------------------------------------------------


def test_a_person_from_the_gmt0015_extension(ca: Issued) -> None:
    found = extract_identity(
        with_extension(ca, printable_string(PERSON)), [rule(f"person:{ID_EXT}")]
    )
    assert found.kind == "person"
    assert found.identifier_type == "resident_id"
    assert found.identifier == PERSON
    assert found.masked == mask(PERSON) == "110***********002X"


@pytest.mark.parametrize("oid", [GMT0015_ORGANIZATION_CODE, GMT0015_CREDIT_CODE_2023])
def test_an_organisation_from_either_credit_code_extension(ca: Issued, oid: str) -> None:
    found = extract_identity(
        with_extension(ca, printable_string(USCC), oid), [rule(f"organisation:ext:{oid}")]
    )
    assert (found.kind, found.identifier_type, found.identifier) == ("organisation", "uscc", USCC)


def test_a_person_from_the_subject_serial_number(ca: Issued) -> None:
    leaf = make_leaf(ca, serial_number=PERSON)
    found = extract_identity(leaf.der, [rule("person:subject:serialNumber")])
    assert (found.identifier_type, found.identifier) == ("resident_id", PERSON)


def test_an_organisation_from_the_organization_identifier(ca: Issued) -> None:
    leaf = make_leaf(ca, "Example Ltd", organization_identifier=f"NTRCN-{USCC}")
    found = extract_identity(leaf.der, [rule("organisation:subject:organizationIdentifier")])
    assert (found.identifier_type, found.identifier) == ("uscc", USCC)


def test_a_person_from_the_common_name(ca: Issued) -> None:
    leaf = make_leaf(ca, PERSON)
    found = extract_identity(leaf.der, [rule("person:subject:CN")])
    assert found.identifier == PERSON


def test_a_pem_certificate_is_read_too(ca: Issued) -> None:
    leaf = make_leaf(ca, serial_number=PERSON)
    assert extract_identity(leaf.pem, [rule("person:subject:serialNumber")]).identifier == PERSON


@pytest.mark.parametrize(
    ("number", "identifier_type"),
    [
        (PERSON, "resident_id"),
        (HONG_KONG, "hong_kong_residence_permit"),
        (FOREIGNER, "foreign_permanent_residence_id"),
        (FOREIGNER_2004, "foreign_permanent_residence_id_2004"),
    ],
)
def test_every_person_document_gets_its_identifier_type(
    ca: Issued, number: str, identifier_type: str
) -> None:
    found = extract_identity(with_extension(ca, utf8_string(number)), [rule(f"person:{ID_EXT}")])
    assert (found.identifier_type, found.identifier) == (identifier_type, number)


def test_whitespace_is_stripped_and_the_x_upper_cased(ca: Issued) -> None:
    value = "  " + PERSON.lower() + " "
    found = extract_identity(with_extension(ca, utf8_string(value)), [rule(f"person:{ID_EXT}")])
    assert found.identifier == PERSON
    leaf = make_leaf(ca, serial_number=" idccn-" + PERSON.lower())
    assert extract_identity(leaf.der, [rule("person:subject:serialNumber")]).identifier == PERSON


# --- encodings of the extension ---------------------------------------------------------

PRINTABLE = tlv(0x13, PERSON.encode())
UTF8 = tlv(0x0C, PERSON.encode())

ENCODINGS = {
    "UTF8String": UTF8,
    "PrintableString": PRINTABLE,
    "IA5String": tlv(0x16, PERSON.encode()),
    "VisibleString": tlv(0x1A, PERSON.encode()),
    "TeletexString": tlv(0x14, PERSON.encode()),
    "BMPString": tlv(0x1E, PERSON.encode("utf-16-be")),
    "UniversalString": tlv(0x1C, PERSON.encode("utf-32-be")),
    "[0] EXPLICIT PrintableString": tlv(0xA0, PRINTABLE),
    "[0] EXPLICIT UTF8String": tlv(0xA0, UTF8),
    "[0] IMPLICIT PrintableString": tlv(0x80, PERSON.encode()),
    "SEQUENCE { PrintableString }": tlv(0x30, PRINTABLE),
    "SEQUENCE { BMPString }": tlv(0x30, tlv(0x1E, PERSON.encode("utf-16-be"))),
    "SEQUENCE { [0] EXPLICIT }": tlv(0x30, tlv(0xA0, PRINTABLE)),
    "SEQUENCE { [0] IMPLICIT }": tlv(0x30, tlv(0x80, PERSON.encode())),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_each_encoding_real_cas_use(ca: Issued, encoding: str) -> None:
    found = extract_identity(with_extension(ca, ENCODINGS[encoding]), [rule(f"person:{ID_EXT}")])
    assert (found.identifier_type, found.identifier) == ("resident_id", PERSON)


def test_a_numeric_string_holds_an_all_digit_number(ca: Issued) -> None:
    value = tlv(0x12, OTHER_PERSON.encode())
    found = extract_identity(with_extension(ca, value), [rule(f"person:{ID_EXT}")])
    assert found.identifier == OTHER_PERSON


def test_a_long_form_length_is_read(ca: Issued) -> None:
    padded = " " * 150 + PERSON
    found = extract_identity(
        with_extension(ca, utf8_string_long(padded)), [rule(f"person:{ID_EXT}")]
    )
    assert found.identifier == PERSON


def utf8_string_long(value: str) -> bytes:
    return tlv(0x0C, value.encode())


@pytest.mark.parametrize(
    ("value", "choice"),
    [
        (tlv(0xA1, tlv(0x0C, "军字第12345678号".encode())), "militaryOfficerCardNumber"),
        (tlv(0x81, "军字第12345678号".encode()), "militaryOfficerCardNumber"),
        (tlv(0xA2, tlv(0x13, b"E12345678")), "passportNumber"),
        (tlv(0x82, b"E12345678"), "passportNumber"),
    ],
)
def test_officer_and_passport_numbers_cannot_sign_in(ca: Issued, value: bytes, choice: str) -> None:
    reason = refusal(with_extension(ca, value), [rule(f"person:{ID_EXT}")])
    assert reason.startswith(f"{ID_EXT}: holds a {choice}, which the platform cannot check")


def test_an_identify_code_is_not_an_organisation(ca: Issued) -> None:
    value = tlv(0xA0, tlv(0x13, USCC.encode()))
    reason = refusal(with_extension(ca, value), [rule(f"organisation:{ID_EXT}")])
    assert "a person's GM/T 0015 IdentifyCode (residenterCardNumber)" in reason


GARBAGE = {
    "empty": (b"", "not DER"),
    "truncated header": (b"\x0c", "not DER"),
    "truncated contents": (b"\x0c\x12" + PERSON.encode()[:5], "not DER"),
    "trailing bytes": (UTF8 + b"\x00", "not DER"),
    "two strings": (UTF8 + UTF8, "not DER"),
    "raw text without DER": (PERSON.encode(), "not DER"),
    "OCTET STRING": (tlv(0x04, UTF8), "found an OCTET STRING"),
    "INTEGER": (tlv(0x02, b"\x01"), "found an INTEGER"),
    "NULL": (b"\x05\x00", "found NULL"),
    "SET": (tlv(0x31, UTF8), "found a SET"),
    "empty SEQUENCE": (b"\x30\x00", "an empty SEQUENCE"),
    "SEQUENCE of two": (tlv(0x30, UTF8 + UTF8), "more than one element inside the SEQUENCE"),
    "SEQUENCE in a SEQUENCE": (tlv(0x30, tlv(0x30, UTF8)), "found a SEQUENCE"),
    "indefinite length": (b"\x30\x80" + UTF8 + b"\x00\x00", "indefinite length"),
    "[3] tag": (tlv(0xA3, UTF8), "context tag [3] (constructed)"),
    "[0] around an INTEGER": (
        tlv(0xA0, tlv(0x02, b"\x01")),
        "[0] residenterCardNumber holds no string",
    ),
    "[0] around two strings": (tlv(0xA0, UTF8 + UTF8), "more than one element inside [0]"),
    "application tag": (tlv(0x41, b"x"), "application tag [1] (primitive)"),
    "bad UTF-8": (tlv(0x0C, b"\xff\xfe1101"), "UTF8String is not validly encoded"),
    "odd BMPString": (tlv(0x1E, b"\x00\x31\x00"), "BMPString is not validly encoded"),
    "non-ASCII PrintableString": (tlv(0x13, b"\xe4\xb8\xad"), "PrintableString is not validly"),
    "huge": (tlv(0x0C, b"1" * 5000), "too long for an identity"),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_in_the_extension_is_refused_with_a_reason(ca: Issued, case: str) -> None:
    value, expected = GARBAGE[case]
    reason = refusal(with_extension(ca, value), [rule(f"person:{ID_EXT}")])
    assert reason.startswith(f"{ID_EXT}: ")
    assert expected in reason
    assert PERSON not in reason
    assert "\n" not in reason


def test_garbage_in_an_early_rule_is_not_skipped_for_a_later_one(ca: Issued) -> None:
    leaf = make_leaf(
        ca, serial_number=PERSON, identity_extensions=[(GMT0015_IDENTITY_NUMBER, b"\x04\x00")]
    )
    rules = [rule(f"person:{ID_EXT}"), rule("person:subject:serialNumber")]
    assert refusal(leaf.der, rules).startswith(f"{ID_EXT}: ")


# --- rules order ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_sources(ca: Issued) -> bytes:
    """A certificate carrying one person in the extension and another in the subject."""
    return make_leaf(
        ca,
        serial_number=OTHER_PERSON,
        identity_extensions=[(GMT0015_IDENTITY_NUMBER, utf8_string(PERSON))],
    ).der


def test_the_first_rule_whose_source_is_present_decides(two_sources: bytes) -> None:
    from_extension = [rule(f"person:{ID_EXT}"), rule("person:subject:serialNumber")]
    assert extract_identity(two_sources, from_extension).identifier == PERSON
    from_subject = list(reversed(from_extension))
    assert extract_identity(two_sources, from_subject).identifier == OTHER_PERSON


def test_an_absent_source_passes_on_to_the_next_rule(two_sources: bytes) -> None:
    rules = [
        rule(f"organisation:{ORG_EXT}"),
        rule("organisation:subject:organizationIdentifier"),
        rule("person:subject:serialNumber"),
    ]
    found = extract_identity(two_sources, rules)
    assert (found.identifier, found.rule) == (OTHER_PERSON, rules[2])


def test_a_bad_first_present_source_refuses_even_when_a_later_one_is_good(ca: Issued) -> None:
    leaf = make_leaf(
        ca,
        serial_number=PERSON,
        identity_extensions=[(GMT0015_IDENTITY_NUMBER, utf8_string(BAD_CHECK))],
    )
    rules = [rule(f"person:{ID_EXT}"), rule("person:subject:serialNumber")]
    assert refusal(leaf.der, rules) == f"{ID_EXT}: check character wrong"


def test_no_source_present_is_refused(ca: Issued) -> None:
    leaf = make_leaf(ca, "Zhang San")
    rules = [rule(f"person:{ID_EXT}"), rule("organisation:subject:organizationIdentifier")]
    assert refusal(leaf.der, rules) == "the certificate carries no identity the CA's rules name"
    assert refusal(leaf.der, []) == "the certificate carries no identity the CA's rules name"


def test_two_values_of_one_source_are_refused(ca: Issued) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Zhang San"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, PERSON),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, OTHER_PERSON),
        ]
    )
    leaf = make_leaf(ca, subject=subject)
    reason = refusal(leaf.der, [rule("person:subject:serialNumber")])
    assert (
        reason == "subject:serialNumber: the certificate carries 2 values; the CA's rule needs one"
    )


def test_a_bmp_string_subject_attribute_is_read(ca: Issued) -> None:
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, PERSON, _type=_ASN1Type.BMPString)]
    )
    leaf = make_leaf(ca, subject=subject)
    assert extract_identity(leaf.der, [rule("person:subject:CN")]).identifier == PERSON


# --- the identifier rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "make"),
    [
        (ID_EXT, lambda ca, n: with_extension(ca, utf8_string(n))),
        ("subject:serialNumber", lambda ca, n: make_leaf(ca, serial_number=n).der),
        ("subject:CN", lambda ca, n: make_leaf(ca, n).der),
    ],
)
def test_a_bad_check_character_names_the_rule(
    ca: Issued, source: str, make: Callable[[Issued, str], bytes]
) -> None:
    certificate = make(ca, BAD_CHECK)
    assert refusal(certificate, [rule(f"person:{source}")]) == f"{source}: check character wrong"


def test_a_bad_credit_code_check_character_is_refused(ca: Issued) -> None:
    certificate = with_extension(ca, printable_string(BAD_USCC), GMT0015_ORGANIZATION_CODE)
    reason = refusal(certificate, [rule(f"organisation:{ORG_EXT}")])
    assert reason.startswith(f"{ORG_EXT}: check character wrong")
    assert BAD_USCC not in reason


def test_a_person_rule_refuses_a_credit_code(ca: Issued) -> None:
    reason = refusal(with_extension(ca, utf8_string(USCC)), [rule(f"person:{ID_EXT}")])
    assert reason == f"{ID_EXT}: an organisation's credit code, not a person's document number"


def test_an_organisation_rule_refuses_a_person_number(ca: Issued) -> None:
    certificate = with_extension(ca, utf8_string(PERSON), GMT0015_ORGANIZATION_CODE)
    reason = refusal(certificate, [rule(f"organisation:{ORG_EXT}")])
    assert reason == f"{ORG_EXT}: a person's document number, not an organisation's credit code"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Zhang San", "wrong length"),
        ("张三", "wrong length"),
        ("1101051949123100", "wrong length"),
        ("11010519491231002Y", "characters no identifier of this kind uses"),
        ("000000194912310025", "unknown address code"),
        ("110105194913310025", "impossible birth date"),
        (" ", "the value is empty"),
        ("1" * 100, "the value is too long to be an identifier"),
    ],
)
def test_values_that_are_no_document_number(ca: Issued, value: str, problem: str) -> None:
    reason = refusal(with_extension(ca, utf8_string(value)), [rule(f"person:{ID_EXT}")])
    assert reason == f"{ID_EXT}: {problem}"


def test_today_decides_whether_a_birth_date_is_in_the_future(ca: Issued) -> None:
    body = "11010520240601001"
    number = body + id_check_char(body)
    certificate = with_extension(ca, utf8_string(number))
    rules = [rule(f"person:{ID_EXT}")]
    reason = refusal(certificate, rules, today=date(2024, 5, 31))
    assert reason == f"{ID_EXT}: birth date in the future"
    assert extract_identity(certificate, rules, today=date(2024, 6, 1)).identifier == number


# --- ETSI EN 319 412-1 semantics identifiers --------------------------------------------


@pytest.mark.parametrize("prefix", ["IDCCN-", "PNOCN-", "TINCN-", "idccn-"])
def test_a_natural_person_prefix_is_stripped(ca: Issued, prefix: str) -> None:
    leaf = make_leaf(ca, serial_number=prefix + PERSON)
    assert extract_identity(leaf.der, [rule("person:subject:serialNumber")]).identifier == PERSON


@pytest.mark.parametrize("prefix", ["NTRCN-", "VATCN-", ""])
def test_a_legal_person_prefix_is_stripped(ca: Issued, prefix: str) -> None:
    leaf = make_leaf(ca, "Example Ltd", organization_identifier=prefix + USCC)
    rules = [rule("organisation:subject:organizationIdentifier")]
    assert extract_identity(leaf.der, rules).identifier == USCC


@pytest.mark.parametrize(
    ("kind", "attribute", "value", "problem"),
    [
        ("person", "serialNumber", f"PASCN-{PERSON}", "PASCN- names a passport number"),
        ("person", "serialNumber", f"NTRCN-{USCC}", "NTRCN- names an organisation's identifier"),
        ("person", "serialNumber", f"IDCDE-{PERSON}", "the identifier was issued in DE"),
        (
            "organisation",
            "organizationIdentifier",
            f"IDCCN-{PERSON}",
            "names a person's identifier",
        ),
        ("organisation", "organizationIdentifier", "LEICN-5493001KJTIIGC8Y1R12", "legal entity"),
        ("organisation", "organizationIdentifier", f"NTRHK-{USCC}", "issued in HK"),
    ],
)
def test_a_prefix_of_the_wrong_kind_or_country_is_refused(
    ca: Issued, kind: str, attribute: str, value: str, problem: str
) -> None:
    if attribute == "serialNumber":
        leaf = make_leaf(ca, "Someone", serial_number=value)
    else:
        leaf = make_leaf(ca, "Someone", organization_identifier=value)
    reason = refusal(leaf.der, [rule(f"{kind}:subject:{attribute}")])
    assert reason.startswith(f"subject:{attribute}: ")
    assert problem in reason


def test_the_common_name_keeps_a_prefix_like_value(ca: Issued) -> None:
    leaf = make_leaf(ca, f"IDCCN-{PERSON}")
    assert refusal(leaf.der, [rule("person:subject:CN")]) == "subject:CN: wrong length"


# --- the number stays out of reasons and representations --------------------------------


@pytest.mark.parametrize(
    ("number", "rules"),
    [
        (BAD_CHECK, [f"person:{ID_EXT}"]),
        (USCC, [f"person:{ID_EXT}"]),
        (PERSON, [f"organisation:{ID_EXT}"]),
        (BAD_USCC, [f"organisation:{ID_EXT}"]),
        ("11010519491331002X", [f"person:{ID_EXT}"]),
        ("1" * 80, [f"person:{ID_EXT}"]),
    ],
)
def test_a_refusal_never_repeats_the_number(ca: Issued, number: str, rules: list[str]) -> None:
    with pytest.raises(IdentityRefused) as caught:
        extract_identity(with_extension(ca, utf8_string(number)), [rule(r) for r in rules])
    for text in (caught.value.reason, str(caught.value), repr(caught.value)):
        assert number not in text
        assert number[:14] not in text


def test_an_identity_does_not_show_its_number_in_its_repr(ca: Issued) -> None:
    found = extract_identity(with_extension(ca, utf8_string(PERSON)), [rule(f"person:{ID_EXT}")])
    assert PERSON not in repr(found)
    assert PERSON not in str(found)


# --- the certificate itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"-----BEGIN CERTIFICATE-----\nAAAA\n"]
)
def test_a_certificate_that_cannot_be_read_is_refused(data: bytes) -> None:
    assert "cannot be read" in refusal(data, [rule(f"person:{ID_EXT}")])


def test_a_truncated_certificate_is_refused(ca: Issued) -> None:
    certificate = with_extension(ca, utf8_string(PERSON))
    assert "cannot be read" in refusal(certificate[:-20], [])
