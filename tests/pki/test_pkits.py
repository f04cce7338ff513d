"""The NIST PKITS suite (RFC 5280 path validation, independent of our code) run through
``idp pki verify`` in process: every case of pyhanko-certvalidator's ``pkits.json``,
with the case's anchor, certificates, CRLs, initial policy set and flags, at a time when
the suite's certificates and CRLs are current; the verdict and exit code must be the
expected ones, stdout JSON only, stderr empty.

The data comes from pyhanko-certvalidator 0.33.0's sdist on PyPI (``tests/pki/pkits``);
when it cannot be fetched the run fails (a collection error), it never skips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pki.verify_cli import verify
from tests.pki.pkits import PkitsUnavailable, cases, pkits_dir

AT = "2022-05-01T00:00:00Z"  # pyhanko's own run of the suite freezes time here
ANCHOR = "CN=Trust Anchor,O=Test Certificates 2011,C=US"

# Cases whose verdict differs from PKITS's, each for a reason that is ours to own:
KNOWN_DISAGREEMENTS = {
    "valid_dsa_signatures_test4": (
        "PKITS 4.1.4 signs with DSA and SHA-1; SHA-1 signatures are refused by the "
        "algorithm policy (pyhanko's default: md2, md5, sha1 weak), deliberately"
    ),
    "valid_dsa_parameter_inheritance_test5": (
        "PKITS 4.1.5: DSA with SHA-1 and inherited DSA parameters; SHA-1 refused as above"
    ),
}

# What the reasons must say, by the kind of failure PKITS expects (pyhanko's message in
# pkits.json); and the cases whose reason is another true one.
REASON_BY_MESSAGE = [
    ("was revoked", "revoked"),
    ("expired", "expired on"),
    ("is not valid until", "is not valid before"),
    ("signature of", "does not verify"),
    ("no valid set of policies", "no acceptable certificate policy"),
    ("permitted namespace", "outside the permitted subtrees"),
    ("excluded from the namespace", "inside the excluded subtrees"),
    ("is not a CA", "is not a CA certificate"),
    ("maximum path length", "pathLenConstraint"),
    ("not allowed to sign certificates", "keyCertSign"),
]
OTHER_REASONS = {
    # refused for its SHA-1 signature before the DSA signature itself is checked
    "invalid_dsa_signature_test6": "uses an algorithm that is not accepted (sha1_dsa)",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``case``: every PKITS case; ``revoked_case``: the cases PKITS expects revoked."""
    wanted = [name for name in ("case", "revoked_case") if name in metafunc.fixturenames]
    if not wanted:
        return
    try:
        all_cases = cases()
    except PkitsUnavailable as exc:
        pytest.fail(f"the PKITS data is needed and could not be fetched: {exc}", pytrace=False)
    if wanted == ["revoked_case"]:
        all_cases = [c for c in all_cases if c.get("error", {}).get("class") == "RevokedError"]
    params = [
        pytest.param(
            case,
            id=f"{case['id']}-{case['name']}",
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_DISAGREEMENTS[case["name"]])]
            if case["name"] in KNOWN_DISAGREEMENTS
            else [],
        )
        for case in all_cases
    ]
    metafunc.parametrize(wanted[0], params)


@pytest.fixture(scope="session")
def pkits_data() -> Path:
    return pkits_dir()


def _arguments(case: dict[str, Any], data: Path, *, revocation: str) -> list[str]:
    certs, crls = data / "certs", data / "crls"
    arguments = [
        str(certs / case["cert"]),
        "--anchor",
        str(certs / "TrustAnchorRootCertificate.crt"),
    ]
    for name in case.get("other_certs", []):
        arguments += ["--intermediate", str(certs / name)]
    for name in ["TrustAnchorRootCRL.crl", *case.get("crls", [])]:
        arguments += ["--crl", str(crls / name)]
    params = case.get("params", {})
    for oid in params.get("user_initial_policy_set", []):
        arguments += ["--policy", oid]
    flags = {
        "initial_explicit_policy": "--require-explicit-policy",
        "initial_policy_mapping_inhibit": "--inhibit-policy-mapping",
        "initial_any_policy_inhibit": "--inhibit-any-policy",
    }
    arguments += [flag for key, flag in flags.items() if params.get(key)]
    return [*arguments, "--at", AT, "--revocation", revocation, "--json"]


def _run(arguments: list[str]) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(verify, arguments)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.stderr == ""
    output: dict[str, Any] = json.loads(result.stdout)
    assert set(output) == {"valid", "reason", "path"}
    return result.exit_code, output


def test_pkits_case(case: dict[str, Any], pkits_data: Path) -> None:
    """Every case, with revocation required for every certificate of the path (PKITS
    gives a CRL for every CA, so this is the strictest reading of each case)."""
    exit_code, output = _run(_arguments(case, pkits_data, revocation="require"))
    expected_valid = "error" not in case
    assert (output["valid"], exit_code) == (expected_valid, 0 if expected_valid else 1), output
    if expected_valid:
        assert output["reason"] == "valid"
        assert len(output["path"]) == case["path_len"]
        assert output["path"][-1] == ANCHOR
        return
    assert output["reason"] != "valid"
    if case["name"] in OTHER_REASONS:
        assert OTHER_REASONS[case["name"]] in output["reason"]
        return
    message = case["error"]["msg_regex"]
    for fragment, expected in REASON_BY_MESSAGE:
        if fragment in message:
            assert expected in output["reason"], (message, output["reason"])


def test_pkits_revoked_case_in_hard_mode(revoked_case: dict[str, Any], pkits_data: Path) -> None:
    """The revoked cases also in ``hard`` mode: PKITS certificates name no CRL
    distribution point, and a CRL given for their issuer is checked all the same
    (pyhanko's own hard-fail would skip it and call them valid)."""
    exit_code, output = _run(_arguments(revoked_case, pkits_data, revocation="hard"))
    assert (output["valid"], exit_code) == (False, 1)
    assert "was revoked on" in output["reason"], output["reason"]
    assert output["reason"].endswith("by CRL")


def test_pkits_revoked_reasons_read_well(pkits_data: Path) -> None:
    by_name = {case["name"]: case for case in cases()}

    def reason(name: str, revocation: str) -> str:
        return str(_run(_arguments(by_name[name], pkits_data, revocation=revocation))[1]["reason"])

    assert reason("invalid_revoked_ee_test3", "soft") == (
        "the certificate was revoked on 2010-01-01 08:30:01 UTC (keyCompromise) by CRL"
    )
    assert reason("invalid_revoked_ca_test2", "soft") == (
        "intermediate certificate CN=Revoked subCA,O=Test Certificates 2011,C=US was revoked "
        "on 2010-01-01 08:30:00 UTC (keyCompromise) by CRL"
    )
    assert reason("missing_crl_test1", "require").startswith(
        "no valid CRL or OCSP response for the certificate"
    )
    assert reason("missing_crl_test1", "soft") == "valid"
    assert reason("invalid_ee_notafter_date_test6", "off") == (
        "the certificate expired on 2011-01-01 08:30:00 UTC"
    )
