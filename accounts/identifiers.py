"""Checks for the identifiers the service handles (design.md section 6): resident ID
numbers and residence permits (GB 11643-1999), the foreigner permanent residence ID
(2023 format, and the 15-character one of 2004), the unified social credit code
(GB 32100-2015, with its embedded GB 11714 organisation code) and mainland mobile
numbers.

Plain Python with no Flask: the web layer, the CLI and batch jobs share it. ``check``
detects the kind and answers a dict; ``reason`` is ``None`` when the value is valid,
else a short machine-readable word. Address codes come from the GB/T 2260 table shipped
in ``accounts/data/gbt2260.tsv.gz`` (abolished codes included: an ID number keeps the
code it was issued with for life), read once on first use.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

DATA = Path(__file__).resolve().parent / "data"

Kind = Literal[
    "resident_id",
    "hong_kong_residence_permit",
    "macau_residence_permit",
    "taiwan_residence_permit",
    "foreign_permanent_residence_id",
    "foreign_permanent_residence_id_2004",
    "uscc",
    "mobile",
    "unknown",
]
Expect = Literal["person_id", "uscc", "mobile"]

PERMIT_KINDS: dict[str, Kind] = {
    "810000": "hong_kong_residence_permit",
    "820000": "macau_residence_permit",
    "830000": "taiwan_residence_permit",
}

# GB 11643-1999 MOD 11-2
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"  # indexed by sum mod 11

# GB 32100-2015
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # values 0-30; no I O S V Z
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# GB 11714 organisation code (characters 9-17 of a USCC)
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
ORG_BODY = re.compile(r"[0-9A-Z]{8}")

# The USCC's own check fails on some early pilot codes: not a reject, but a lookup.
CONFIRM_WITH_REGISTRY = "check_failed_confirm_with_registry"

# ASCII only: str.isdigit() and int() also accept other scripts' digits
DIGITS = re.compile(r"[0-9]+")
PERSON_ID = re.compile(r"[0-9]{17}[0-9X]")
# The foreigner permanent residence ID of 2004-2023: ISO 3166-1 alpha-3 nationality,
# 2-digit province code of the accepting office, YYMMDD birth date, 4 more digits.
OLD_FOREIGN_ID = re.compile(r"([A-Z]{3})([0-9]{2})([0-9]{6})([0-9]{4})")
MOBILE = re.compile(r"1[3-9][0-9]{9}")
MOBILE_PREFIX = re.compile(r"^\+86[ -]?")
# Names of the "municipal districts" / "counties" groupings, left out of region names.
PLACEHOLDER_NAMES = frozenset({"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"})


@dataclass(frozen=True)
class Division:
    name: str
    in_use: bool


@cache
def address_codes() -> dict[str, Division]:
    """The GB/T 2260 table: code to latest name, and whether the code is still in use."""
    table: dict[str, Division] = {}
    with gzip.open(DATA / "gbt2260.tsv.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            code, name, in_use = line.rstrip("\n").split("\t")
            table[code] = Division(name, in_use == "1")
    return table


def region_name(code: str) -> str | None:
    """Province, prefecture and county names for a 6-digit code, or None if unknown."""
    table = address_codes()
    if code not in table:
        return None
    parts: list[str] = []
    for prefix in (code[:2] + "0000", code[:4] + "00", code):
        division = table.get(prefix)
        if division and division.name not in PLACEHOLDER_NAMES and division.name not in parts:
            parts.append(division.name)
    return "".join(parts) or None


@dataclass
class Result:
    value: str
    kind: Kind
    reason: str | None = None
    fields: dict[str, str | None] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, str | bool | None]:
        answer: dict[str, str | bool | None] = {
            "value": self.value,
            "valid": self.valid,
            "kind": self.kind,
            "reason": self.reason,
        }
        answer.update(self.fields)
        return answer


def id_check_char(body: str) -> str:
    """The MOD 11-2 check character for 17 digits."""
    return ID_CHECK[sum(int(ch) * w for ch, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


def uscc_check_char(body: str) -> str:
    """The GB 32100 check character for 17 characters of the USCC alphabet."""
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(body, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_check_char(body: str) -> str:
    """The GB 11714 check character for an 8-character organisation code body."""
    total = sum(int(ch, 36) * w for ch, w in zip(body, ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def _birth_date(digits: str, today: date) -> tuple[date | None, str | None]:
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None, "bad_birth_date"
    if born > today:
        return None, "future_birth_date"
    return born, None


def check_person_id(value: str, *, today: date | None = None) -> Result:
    """A resident ID number, a Hong Kong / Macau / Taiwan residence permit or a
    foreigner permanent residence ID (all 18 characters with the MOD 11-2 check)."""
    today = today or date.today()  # noqa: DTZ011 - birth dates are calendar dates
    number = value.strip().upper()
    foreign = number.startswith("9")
    kind: Kind = (
        "foreign_permanent_residence_id" if foreign else PERMIT_KINDS.get(number[:6], "resident_id")
    )
    if len(number) != 18:
        return Result(value, kind, "bad_length")
    if not PERSON_ID.fullmatch(number):
        return Result(value, kind, "bad_characters")
    fields: dict[str, str | None]
    if foreign:
        province = number[1:3] + "0000"
        if province not in address_codes():
            return Result(value, kind, "unknown_province_code")
        fields = {
            "province_code": number[1:3],
            "region": region_name(province),
            "nationality_code": number[3:6],
        }
    else:
        if number[:6] not in address_codes():
            return Result(value, kind, "unknown_address_code")
        fields = {"address_code": number[:6], "region": region_name(number[:6])}
    born, problem = _birth_date(number[6:14], today)
    if born is None:
        return Result(value, kind, problem)
    if id_check_char(number[:17]) != number[17]:
        return Result(value, kind, "bad_checksum")
    fields["birth_date"] = born.isoformat()
    fields["sex"] = "male" if int(number[16]) % 2 else "female"
    fields["normalized"] = number
    return Result(value, kind, None, fields)


def check_old_foreign_id(value: str, *, today: date | None = None) -> Result:
    """The 15-character foreigner permanent residence ID (issued 2004-2023): three
    letters of nationality (ISO 3166-1 alpha-3), the accepting province's 2-digit code, a
    YYMMDD birth date and four digits. No check character is verified: the layout has
    none that is published, so the registry is the authority on the rest."""
    today = today or date.today()  # noqa: DTZ011 - birth dates are calendar dates
    number = value.strip().upper()
    kind: Kind = "foreign_permanent_residence_id_2004"
    if len(number) != 15:
        return Result(value, kind, "bad_length")
    match = OLD_FOREIGN_ID.fullmatch(number)
    if match is None:
        return Result(value, kind, "bad_characters")
    nationality, province, birth, _rest = match.groups()
    if province + "0000" not in address_codes():
        return Result(value, kind, "unknown_province_code")
    # the century is not written: the latest date that is not in the future
    born: date | None = None
    problem: str | None = "bad_birth_date"
    for century in ("20", "19"):
        born, problem = _birth_date(century + birth, today)
        if born is not None:
            break
    if born is None:
        return Result(value, kind, problem)
    fields: dict[str, str | None] = {
        "nationality_code": nationality,
        "province_code": province,
        "region": region_name(province + "0000"),
        "birth_date": born.isoformat(),
        "normalized": number,
    }
    return Result(value, kind, None, fields)


def check_uscc(value: str) -> Result:
    """A unified social credit code. A well-formed code whose own check character is
    wrong is reported invalid with ``CONFIRM_WITH_REGISTRY``: some early pilot codes
    fail the standard check, so it is looked up rather than rejected outright."""
    code = value.strip().upper()
    if len(code) != 18:
        return Result(value, "uscc", "bad_length")
    if any(ch not in USCC_ALPHABET for ch in code):
        return Result(value, "uscc", "bad_characters")
    organisation = code[8:17]
    if not ORG_BODY.fullmatch(organisation[:8]) or not (
        organisation[8].isdigit() or organisation[8] == "X"
    ):
        return Result(value, "uscc", "bad_organisation_code")
    if org_check_char(organisation[:8]) != organisation[8]:
        return Result(value, "uscc", "bad_organisation_code_checksum")
    fields: dict[str, str | None] = {
        "registration_authority_code": code[0],
        "organisation_type_code": code[1],
        "region_code": code[2:8],
        "region": region_name(code[2:8]),
        "organisation_code": organisation,
        "normalized": code,
    }
    reason = None if uscc_check_char(code[:17]) == code[17] else CONFIRM_WITH_REGISTRY
    return Result(value, "uscc", reason, fields)


def check_mobile(value: str) -> Result:
    """A mainland mobile number: 11 digits ``1[3-9]xxxxxxxxx``, optionally after +86 or
    0086; spaces and hyphens are ignored."""
    number = re.sub(r"[\s-]", "", value)
    number = number.removeprefix("+86") if number.startswith("+86") else number
    number = number.removeprefix("0086") if len(number) == 15 else number
    if not DIGITS.fullmatch(number):
        return Result(value, "mobile", "bad_characters")
    if len(number) != 11:
        return Result(value, "mobile", "bad_length")
    if not MOBILE.fullmatch(number):
        return Result(value, "mobile", "bad_prefix")
    return Result(value, "mobile", None, {"number": number})


def _looks_like_person_id(number: str) -> bool:
    return PERSON_ID.fullmatch(number.upper()) is not None


def check(
    value: str, *, today: date | None = None, expect: Expect | None = None
) -> dict[str, str | bool | None]:
    """Detect the kind of ``value`` and check it; ``expect`` forces one interpretation.

    Detection: a value starting with ``+`` or of 11 digits is a mobile number; 15
    characters starting with letters, the 2004 foreigner permanent residence ID. An
    18-character value of 17 digits and a digit or X is a person's ID number unless it
    fails as one and passes as a USCC (``91110000600037341L`` is all digits but the
    last), or fails on its address code or birth date (checked before the check
    character) and is a well-formed USCC whose only fault is the check character. Any
    other 18-character value is a USCC.
    """
    if expect is not None:
        return _check_as(value, expect, today).as_dict()
    stripped = value.strip()
    # any script's digits here: check_mobile then says which rule they break
    if stripped.startswith("+") or (len(stripped) == 11 and stripped.isdigit()):
        return check_mobile(value).as_dict()
    if len(stripped) == 15 and stripped[:3].isalpha():
        return check_old_foreign_id(value, today=today).as_dict()
    if len(stripped) != 18:
        return Result(value, "unknown", "bad_length").as_dict()
    if not _looks_like_person_id(stripped):
        return check_uscc(value).as_dict()
    person = check_person_id(value, today=today)
    if person.valid:
        return person.as_dict()
    organisation = check_uscc(value)
    structural = {"unknown_address_code", "unknown_province_code", "bad_birth_date"}
    if organisation.valid or (
        organisation.reason == CONFIRM_WITH_REGISTRY and person.reason in structural
    ):
        return organisation.as_dict()
    return person.as_dict()


def _check_as(value: str, expect: Expect, today: date | None) -> Result:
    if expect == "uscc":
        return check_uscc(value)
    if expect == "mobile":
        return check_mobile(value)
    if len(value.strip()) == 15:
        return check_old_foreign_id(value, today=today)
    return check_person_id(value, today=today)


def mask(value: str) -> str:
    """The value with its middle hidden, for display: ``110***********002X``,
    ``138****5678``. Keeps the first 3 and last 4 characters of values of 11 or more
    characters, the first and last of shorter ones, nothing of 4 or fewer."""
    text = MOBILE_PREFIX.sub("", value.strip())
    if len(text) >= 11:
        head, tail = 3, 4
    elif len(text) > 4:
        head, tail = 1, 1
    else:
        return "*" * len(text)
    return text[:head] + "*" * (len(text) - head - tail) + text[-tail:]
