from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner

from accounts.identifiers import (
    CONFIRM_WITH_REGISTRY,
    address_codes,
    check,
    check_mobile,
    check_person_id,
    check_uscc,
    mask,
)
from idp.cli import main

TODAY = date(2026, 6, 1)
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def with_id_check(body: str) -> str:
    """Written out again from design.md rather than imported, so the two can disagree."""
    total = sum(int(digit) * weight for digit, weight in zip(body, ID_WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


def with_org_check(body: str) -> str:
    weights = [3, 7, 9, 10, 5, 8, 4, 2]
    check_value = 11 - sum(int(ch, 36) * w for ch, w in zip(body, weights, strict=True)) % 11
    return body + {10: "X", 11: "0"}.get(check_value, str(check_value))


def with_uscc_check(body: str) -> str:
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(body, USCC_WEIGHTS, strict=True))
    return body + USCC_ALPHABET[(31 - total % 31) % 31]


def wrong_last(value: str, alphabet: str = "0123456789X") -> str:
    return value[:-1] + next(ch for ch in alphabet if ch != value[-1])


def test_the_design_examples_are_valid() -> None:
    person = check("11010519491231002X", today=TODAY)
    assert person == {
        "value": "11010519491231002X",
        "valid": True,
        "kind": "resident_id",
        "reason": None,
        "address_code": "110105",
        "region": "北京市朝阳区",
        "birth_date": "1949-12-31",
        "sex": "female",
        "normalized": "11010519491231002X",
    }
    organisation = check("91110000600037341L")
    assert organisation == {
        "value": "91110000600037341L",
        "valid": True,
        "kind": "uscc",
        "reason": None,
        "registration_authority_code": "9",
        "organisation_type_code": "1",
        "region_code": "110000",
        "region": "北京市",
        "organisation_code": "600037341",
        "normalized": "91110000600037341L",
    }


def test_the_test_helpers_agree_with_the_design_examples() -> None:
    assert with_id_check("11010519491231002") == "11010519491231002X"
    assert with_uscc_check("91110000600037341") == "91110000600037341L"
    assert with_org_check("60003734") == "600037341"


def test_lower_case_x_and_surrounding_spaces_are_accepted() -> None:
    assert check(" 11010519491231002x ", today=TODAY)["valid"] is True


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("11010519491231002", "bad_length"),
        ("11010519491231002X1", "bad_length"),
        ("", "bad_length"),
    ],
)
def test_wrong_lengths(value: str, reason: str) -> None:
    result = check(value, today=TODAY)
    assert result["valid"] is False
    assert result["reason"] == reason


def test_person_id_reasons() -> None:
    assert check_person_id("1101051949123100", today=TODAY).reason == "bad_length"
    assert check_person_id("1101051949A231002X", today=TODAY).reason == "bad_characters"
    assert check_person_id("11010519491231002Y", today=TODAY).reason == "bad_characters"
    assert check_person_id("110105194912310021", today=TODAY).reason == "bad_checksum"
    assert check("110105194912310021", today=TODAY)["reason"] == "bad_checksum"


def test_unknown_address_code() -> None:
    number = with_id_check("44199919491231002")
    assert check(number, today=TODAY)["reason"] == "unknown_address_code"


def test_abolished_address_code_is_accepted() -> None:
    assert address_codes()["110103"].in_use is False  # 崇文区, merged into 东城区 in 2010
    result = check(with_id_check("11010319800101001"), today=TODAY)
    assert result["valid"] is True
    assert result["region"] == "北京市崇文区"


def test_dongguan_has_no_county_level() -> None:
    result = check(with_id_check("44190019900101002"), today=TODAY)
    assert result["valid"] is True
    assert result["region"] == "广东省东莞市"


@pytest.mark.parametrize(
    ("birth", "reason"),
    [
        ("19990229", "bad_birth_date"),  # not a leap year
        ("19000229", "bad_birth_date"),  # centuries are not, unless divisible by 400
        ("19991301", "bad_birth_date"),
        ("19990431", "bad_birth_date"),
        ("19990100", "bad_birth_date"),
        ("00000101", "bad_birth_date"),
        ("20260602", "future_birth_date"),
        ("20000229", None),
        ("20260601", None),  # born today
    ],
)
def test_birth_dates(birth: str, reason: str | None) -> None:
    result = check(with_id_check(f"440306{birth}123"), today=TODAY)
    assert result["reason"] == reason
    assert result["kind"] == "resident_id"


def test_today_defaults_to_the_real_date() -> None:
    assert check_person_id(with_id_check("44030620000229123")).valid
    assert check_person_id(with_id_check("44030699991231123")).reason == "future_birth_date"


@pytest.mark.parametrize(("sequence", "sex"), [("001", "male"), ("002", "female"), ("999", "male")])
def test_sex_from_the_sequence_digit(sequence: str, sex: str) -> None:
    assert check(with_id_check(f"44190019900101{sequence}"), today=TODAY)["sex"] == sex


@pytest.mark.parametrize(
    ("code", "kind", "region"),
    [
        ("810000", "hong_kong_residence_permit", "香港特别行政区"),
        ("820000", "macau_residence_permit", "澳门特别行政区"),
        ("830000", "taiwan_residence_permit", "台湾省"),
    ],
)
def test_residence_permits(code: str, kind: str, region: str) -> None:
    result = check(with_id_check(f"{code}19850315004"), today=TODAY)
    assert result["valid"] is True
    assert result["kind"] == kind
    assert result["region"] == region
    assert result["sex"] == "female"
    bad = check(wrong_last(with_id_check(f"{code}19850315004")), today=TODAY)
    assert (bad["kind"], bad["reason"]) == (kind, "bad_checksum")


def test_foreign_permanent_residence_id() -> None:
    # 9, Guangdong (44), nationality 840 (United States), born 1980-07-15,
    # sequence 01, sex digit 3 (male)
    number = with_id_check("94484019800715013")
    result = check(number, today=TODAY)
    assert result == {
        "value": number,
        "valid": True,
        "kind": "foreign_permanent_residence_id",
        "reason": None,
        "province_code": "44",
        "region": "广东省",
        "nationality_code": "840",
        "birth_date": "1980-07-15",
        "sex": "male",
        "normalized": number,
    }
    female = with_id_check("93139220010101024")  # Shanghai, Japan (392)
    assert check(female, today=TODAY)["sex"] == "female"


def test_foreign_permanent_residence_id_invalid() -> None:
    good = with_id_check("94484019800715013")
    assert check_person_id(wrong_last(good), today=TODAY).reason == "bad_checksum"
    assert check_person_id(good[:17], today=TODAY).reason == "bad_length"
    unknown_province = with_id_check("90084019800715013")
    assert check_person_id(unknown_province, today=TODAY).reason == "unknown_province_code"
    bad_date = with_id_check("94484019810229013")
    assert check_person_id(bad_date, today=TODAY).reason == "bad_birth_date"
    future = with_id_check("94484020300101013")
    result = check(future, today=TODAY)
    assert (result["kind"], result["reason"]) == (
        "foreign_permanent_residence_id",
        "future_birth_date",
    )


def test_uscc_with_letters_in_the_organisation_code() -> None:
    # authority 9 (market regulation), type 1 (enterprise), Shenzhen, organisation code
    body = "91440300" + with_org_check("MA5D4K9L")
    code = with_uscc_check(body)
    result = check(code)
    assert result["valid"] is True
    assert result["kind"] == "uscc"
    assert result["region"] == "广东省深圳市"
    assert result["organisation_code"] == body[8:]
    assert check(code.lower())["valid"] is True


def test_uscc_failing_its_own_check_is_confirmed_with_the_registry() -> None:
    bad = wrong_last("91110000600037341L", USCC_ALPHABET)
    result = check(bad)
    assert result["valid"] is False
    assert result["kind"] == "uscc"
    assert result["reason"] == CONFIRM_WITH_REGISTRY == "check_failed_confirm_with_registry"
    assert result["organisation_code"] == "600037341"  # parsed, for the lookup


def test_uscc_embedded_organisation_code_check() -> None:
    body = "91110000600037342"  # organisation code 60003734-2: its check is 1
    assert check_uscc(with_uscc_check(body)).reason == "bad_organisation_code_checksum"
    assert check(with_uscc_check(body))["reason"] == "bad_organisation_code_checksum"


def test_organisation_check_ten_and_eleven() -> None:
    assert with_org_check("00000000") == "000000000"  # 11 - 0 = 11 -> 0
    codes = {with_org_check(f"{n:08d}")[-1] for n in range(200)}
    assert "X" in codes  # 10 -> X
    for n in range(200):
        organisation = with_org_check(f"{n:08d}")
        code = with_uscc_check("91110000" + organisation)
        assert check_uscc(code).valid, code


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("91110000600037341", "bad_length"),
        ("9111000060003734IL", "bad_characters"),  # I is not in the alphabet
        ("91110000600O37341L", "bad_characters"),
        ("91110000-00037341L", "bad_characters"),
        ("9111000060003734YL", "bad_organisation_code"),  # check of the org code: 0-9 or X
    ],
)
def test_uscc_reasons(code: str, reason: str) -> None:
    assert check_uscc(code).reason == reason


def test_uscc_that_looks_like_a_person_id() -> None:
    # authority 1, type 2 (public institution): all digits, the shape of a person ID,
    # but "00400000" is no birth date
    code = with_uscc_check("12100000" + with_org_check("40000004"))
    assert code == "121000004000000427"
    assert check(code)["kind"] == "uscc"
    assert check(code)["valid"] is True
    assert check(code, expect="person_id")["valid"] is False
    pilot = check(code[:-1] + "8")
    assert (pilot["kind"], pilot["reason"]) == ("uscc", CONFIRM_WITH_REGISTRY)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("13812345678", None),
        ("19912345678", None),
        ("+8613812345678", None),
        ("+86 13812345678", None),
        ("+86-13812345678", None),
        ("12812345678", "bad_prefix"),
        ("23812345678", "bad_prefix"),
        ("+86138123456", "bad_length"),
        ("+86138123456789", "bad_length"),
        ("+8613812a45678", "bad_characters"),
        ("+1 2025550123", "bad_characters"),
    ],
)
def test_mobile_numbers(number: str, reason: str | None) -> None:
    result = check(number)
    assert result["kind"] == "mobile"
    assert result["reason"] == reason
    if reason is None:
        assert result["number"] == number[-11:]


def test_expect_forces_the_kind() -> None:
    assert check("13812345678", expect="person_id")["reason"] == "bad_length"
    assert check("11010519491231002X", expect="uscc")["kind"] == "uscc"
    assert check_mobile("110105194912310021").reason == "bad_length"
    assert check_mobile("11010519491231002X").reason == "bad_characters"


def test_mask() -> None:
    assert mask("11010519491231002X") == "110***********002X"
    assert mask("91110000600037341L") == "911***********341L"
    assert mask("13812345678") == "138****5678"
    assert mask("+86 13812345678") == "138****5678"
    assert mask("abcdef") == "a****f"
    assert mask("abcd") == "****"


def test_the_table_is_read_once_and_has_the_permits() -> None:
    assert address_codes() is address_codes()
    assert {"810000", "820000", "830000", "441900"} <= set(address_codes())
    assert len(address_codes()) > 7000


def test_cli_json_lines_and_exit_codes() -> None:
    runner = CliRunner()
    good = runner.invoke(
        main, ["ids", "check", "--json", "11010519491231002X", "91110000600037341L"]
    )
    assert good.exit_code == 0, good.output
    lines = [json.loads(line) for line in good.output.splitlines()]
    assert [(line["kind"], line["valid"]) for line in lines] == [
        ("resident_id", True),
        ("uscc", True),
    ]

    mixed = runner.invoke(main, ["ids", "check", "--json", "13812345678", "110105194912310021"])
    assert mixed.exit_code == 1
    lines = [json.loads(line) for line in mixed.output.splitlines()]
    assert [line["reason"] for line in lines] == [None, "bad_checksum"]


def test_cli_readable_output() -> None:
    result = CliRunner().invoke(main, ["ids", "check", "11010519491231002X", "1381234567"])
    assert result.exit_code == 1
    first, second = result.output.splitlines()
    assert first.startswith("11010519491231002X\tresident_id\tvalid\t")
    assert "birth_date=1949-12-31" in first
    assert second == "1381234567\tunknown\tinvalid (bad_length)"


def test_cli_needs_a_value() -> None:
    assert CliRunner().invoke(main, ["ids", "check"]).exit_code == 2


def test_a_lower_case_x_is_normalised() -> None:
    result = check("11010519491231002x", today=TODAY)
    assert result["valid"] is True
    assert result["normalized"] == "11010519491231002X"
    assert check("91110000600037341l")["normalized"] == "91110000600037341L"


@pytest.mark.parametrize(
    "value",
    [
        "110105\u0661\u0669\u0664\u0669\u0661\u0662\u0663\u0661\u0660\u0660\u0662X",
        "11010519491231\u2070\u2070\u00b2X",  # superscript digits: int() refuses them
        (  # full-width digits
            "\uff11\uff11\uff10\uff11\uff10\uff15\uff11\uff19\uff14\uff19\uff11\uff12"
            "\uff13\uff11\uff10\uff10\uff12X"
        ),
    ],
)
def test_digits_of_other_scripts_are_refused_not_read(value: str) -> None:
    """Python's isdigit() and int() accept Arabic-Indic, full-width and superscript
    digits; an ID number written with them must not pass (nor crash the check)."""
    result = check(value, today=TODAY)
    assert result["valid"] is False
    assert result["reason"] == "bad_characters"
    assert check_person_id(value, today=TODAY).reason == "bad_characters"


def test_a_mobile_number_in_other_digits_is_refused() -> None:
    result = check("\u0661\u0663\u0668" + "\u0660" * 8)
    assert (result["kind"], result["reason"]) == ("mobile", "bad_characters")


def test_the_2004_foreigner_permanent_residence_id() -> None:
    result = check("usa449006011234", today=TODAY)
    assert result == {
        "value": "usa449006011234",
        "valid": True,
        "kind": "foreign_permanent_residence_id_2004",
        "reason": None,
        "nationality_code": "USA",
        "province_code": "44",
        "region": "广东省",
        "birth_date": "1990-06-01",
        "normalized": "USA449006011234",
    }
    # the century is not written: the latest date not in the future
    assert check("CAN442302281234", today=TODAY)["birth_date"] == "2023-02-28"
    assert check("CAN442612311234", today=TODAY)["birth_date"] == "1926-12-31"
    assert check("USA442002291234", today=TODAY)["birth_date"] == "2020-02-29"
    assert check("USA449006011234", expect="person_id", today=TODAY)["valid"] is True


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("USA441902291234", "bad_birth_date"),  # neither 2019 nor 1919 had a 29 February
        ("USA449013011234", "bad_birth_date"),
        ("USA999006011234", "unknown_province_code"),
        ("US1449006011234", "bad_characters"),
        ("USA44900601123X", "bad_characters"),
    ],
)
def test_the_2004_foreigner_permanent_residence_id_rules(value: str, reason: str) -> None:
    from accounts.identifiers import check_old_foreign_id

    result = check_old_foreign_id(value, today=TODAY)
    assert (result.valid, result.reason) == (False, reason)
    assert check_old_foreign_id(value[:-1], today=TODAY).reason == "bad_length"


def test_0086_and_separators_are_accepted_where_the_kind_is_known() -> None:
    result = check_mobile("0086 138-1234-5678")
    assert result.valid
    assert result.fields["number"] == "13812345678"
