"""``idp pki verify``: validate a certificate path from the command line, against the
anchors given (no application needed) or against the platform's trust store.

Contract (issue 11): exit 0 valid, 1 invalid or refused input, 2 usage; ``--json``
prints only ``{"valid", "reason", "path"}``; bad input gives a one-line reason (the JSON
``reason`` with ``--json``), never a traceback.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import has_app_context
from flask.cli import ScriptInfo

from idp.core.cli_support import EXIT_REFUSED, EXIT_USAGE, echo_json, with_app
from idp.core.runtime import Runtime, db
from pki.challenge import sign_challenge
from pki.container import Pki
from pki.identity import IdentityRefused, IdentityRule, extract_identity
from pki.validation import (
    MAX_CERTIFICATES,
    REVOCATION_MODES,
    BadInput,
    RevocationMode,
    ValidationOptions,
    ValidationResult,
    load_certificates,
    load_crls,
    validate,
)

MAX_FILE_BYTES = 16 * 1024 * 1024  # a certificate or CRL file read from the command line
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


class _Refused(Exception):
    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@click.command("verify")
@click.argument("leaf", metavar="LEAF")
@click.option("--anchor", "anchors", multiple=True, metavar="FILE", help="Trust anchor(s).")
@click.option(
    "--intermediate", "intermediates", multiple=True, metavar="FILE",
    help="Other certificates for path building (cross-certificates, intermediates).",
)  # fmt: skip
@click.option("--crl", "crls", multiple=True, metavar="FILE", help="CRL(s), PEM or DER.")
@click.option(
    "--policy", "policies", multiple=True, metavar="OID",
    help="Acceptable policy OID (user-initial-policy-set; default anyPolicy).",
)  # fmt: skip
@click.option("--require-explicit-policy", is_flag=True, help="The path must carry a policy.")
@click.option("--inhibit-policy-mapping", is_flag=True, help="Refuse policy mapping.")
@click.option("--inhibit-any-policy", is_flag=True, help="Do not let anyPolicy match.")
@click.option(
    "--at", "at", metavar="ISO8601", help="Validation time (default now; no offset: UTC)."
)
@click.option(
    "--revocation", metavar="off|soft|hard|require",
    help=(
        "off: no check; soft: refuse only a known revocation; hard: also refuse when a "
        "CRL is given or named but unusable; require: a good CRL/OCSP status for every "
        "certificate. Default with --anchor: soft when --crl is given, else off; "
        "without --anchor: as each registered CA is configured."
    ),
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print only JSON.")
def verify(
    leaf: str,
    anchors: tuple[str, ...],
    intermediates: tuple[str, ...],
    crls: tuple[str, ...],
    policies: tuple[str, ...],
    require_explicit_policy: bool,
    inhibit_policy_mapping: bool,
    inhibit_any_policy: bool,
    at: str | None,
    revocation: str | None,
    as_json: bool,
) -> None:
    """Validate the certificate in LEAF (PEM or DER) by RFC 5280, through the
    certificates given, to an --anchor; without --anchor, through the platform's trust
    store (the bridge as anchor, the registered CAs' cross-certificates).

    Exit 0 valid, 1 invalid, 2 usage."""
    try:
        _quiet_pyhanko()
        leaf_der = _read_leaf(leaf)
        options = ValidationOptions(
            anchors=tuple(der for path in anchors for der in _read_certificates(path, "--anchor")),
            intermediates=tuple(
                der for path in intermediates for der in _read_certificates(path, "--intermediate")
            ),
            crls=tuple(der for path in crls for der in _read_crls(path)),
            policies=frozenset(_policy(oid) for oid in policies) or None,
            require_explicit_policy=require_explicit_policy,
            inhibit_policy_mapping=inhibit_policy_mapping,
            inhibit_any_policy=inhibit_any_policy,
            at=_time(at),
            revocation=_mode(revocation, anchored=bool(anchors), have_crls=bool(crls)),
        )
        if anchors:
            result = validate(leaf_der, options)
        else:
            _need_app()
            result = with_app(_through_trust_store)(leaf_der, options)
    except _Refused as exc:
        _refuse(exc.reason, exc.code, as_json=as_json)
    except BadInput as exc:
        _refuse(exc.reason, EXIT_REFUSED, as_json=as_json)
    _report(result, as_json=as_json)


def _quiet_pyhanko() -> None:
    """pyhanko logs a warning with a traceback for each CRL issuer it cannot validate;
    on the command line the reason says it, on one line. (A command's process ends
    after it, so the level is not restored.)"""
    logging.getLogger("pyhanko_certvalidator").setLevel(logging.ERROR)


def _through_trust_store(leaf_der: bytes, options: ValidationOptions) -> ValidationResult:
    return Pki.of().trust.validate(db(), leaf_der, options)


def _need_app() -> None:
    if not has_app_context() and click.get_current_context().find_object(ScriptInfo) is None:
        raise _Refused(
            "without --anchor this command validates through the platform's trust store "
            "and needs the application: run it through `idp`, or give --anchor",
            EXIT_USAGE,
        )


def _report(result: ValidationResult, *, as_json: bool) -> None:
    if as_json:
        echo_json({"valid": result.valid, "reason": result.reason, "path": list(result.path)})
    elif result.valid:
        click.echo(f"valid: {' <- '.join(result.path)}")
    else:
        click.echo(f"invalid: {result.reason}")
    if not result.valid:
        raise SystemExit(EXIT_REFUSED)


def _refuse(reason: str, code: int, *, as_json: bool) -> NoReturn:
    if as_json:
        echo_json({"valid": False, "reason": reason, "path": []})
    else:
        click.echo(f"idp: {reason}", err=True)
    raise SystemExit(code)


def _read(path: str, option: str) -> bytes:
    file = Path(path)
    try:
        if file.is_dir():
            raise _Refused(f"{option} {path}: is a directory, not a file", EXIT_USAGE)
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _Refused(f"{option} {path}: no such file", EXIT_USAGE) from None
    except OSError as exc:
        raise _Refused(f"{option} {path}: cannot be read ({exc.strerror})", EXIT_USAGE) from None
    if len(data) > MAX_FILE_BYTES:
        raise _Refused(f"{option} {path}: larger than {MAX_FILE_BYTES} bytes", EXIT_REFUSED)
    return data


def _read_leaf(path: str) -> bytes:
    certificates = _read_certificates(path, "LEAF")
    if len(certificates) != 1:
        raise _Refused(
            f"LEAF {path}: expected one certificate, found {len(certificates)}", EXIT_REFUSED
        )
    return certificates[0]


def _read_certificates(path: str, option: str) -> list[bytes]:
    try:
        return load_certificates(_read(path, option), limit=MAX_CERTIFICATES)
    except BadInput as exc:
        raise _Refused(f"{option} {path}: {exc.reason}", EXIT_REFUSED) from None


def _read_crls(path: str) -> list[bytes]:
    try:
        return load_crls(_read(path, "--crl"))
    except BadInput as exc:
        raise _Refused(f"--crl {path}: {exc.reason}", EXIT_REFUSED) from None


def _policy(oid: str) -> str:
    if not _OID.match(oid):
        raise _Refused(f"--policy {oid!r}: not a dotted OID (e.g. 2.16.156.1.1)", EXIT_USAGE)
    return oid


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Refused(
            f"--at {text!r}: not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)", EXIT_USAGE
        ) from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def _mode(text: str | None, *, anchored: bool, have_crls: bool) -> RevocationMode | None:
    if text is None:
        if not anchored:
            return None  # the trust store applies each CA's configured mode
        return "soft" if have_crls else "off"
    for mode in REVOCATION_MODES:
        if text == mode:
            return mode
    raise _Refused(f"--revocation {text!r}: one of {'|'.join(REVOCATION_MODES)}", EXIT_USAGE)


@click.command("identity")
@click.argument("certificate", metavar="CERT")
@click.option("--crl", "crls", multiple=True, metavar="FILE", help="CRL(s), PEM or DER.")
@click.option(
    "--at", "at", metavar="ISO8601", help="Validation time (default now; no offset: UTC)."
)
@click.option(
    "--revocation", metavar="off|soft|hard|require",
    help="Default: as the certificate's CA is configured.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print only JSON.")
def identity(
    certificate: str, crls: tuple[str, ...], at: str | None, revocation: str | None, as_json: bool
) -> None:
    """Validate CERT through the platform's trust store and print the identity its CA's
    rules read from it: kind (person or organisation), identifier type, and the
    identifier masked as the pages mask it (never the full number, nor the subject).

    Exit 0 valid, 1 invalid, 2 usage."""
    try:
        _quiet_pyhanko()
        leaf_der = _read_leaf(certificate)
        options = ValidationOptions(
            anchors=(),
            crls=tuple(der for path in crls for der in _read_crls(path)),
            at=_time(at),
            revocation=_mode(revocation, anchored=False, have_crls=bool(crls)),
        )
        _need_app()
        found = with_app(_identity_through_trust_store)(leaf_der, options)
    except _Refused as exc:
        _refuse_identity(exc.reason, exc.code, as_json=as_json)
    except BadInput as exc:
        _refuse_identity(exc.reason, EXIT_REFUSED, as_json=as_json)
    if as_json:
        echo_json(found)
    elif found["valid"]:
        click.echo(
            f"valid: {found['kind']} {found['identifier_type']} {found['identifier']} "
            f"(CA {found['ca']})"
        )
    else:
        click.echo(f"invalid: {found['reason']}")
    if not found["valid"]:
        raise SystemExit(EXIT_REFUSED)


def _identity_through_trust_store(leaf_der: bytes, options: ValidationOptions) -> dict[str, Any]:
    found: dict[str, Any] = {
        "valid": False,
        "reason": "",
        "ca": None,
        "kind": None,
        "identifier_type": None,
        "identifier": None,
    }
    result = Pki.of().trust.validate(db(), leaf_der, options)
    found["ca"] = result.ca
    if not result.valid:
        return {**found, "reason": result.reason}
    rules = [IdentityRule.parse(text) for text in result.identity_rules]
    try:
        named = extract_identity(leaf_der, rules, today=Runtime.of().clock.now().date())
    except IdentityRefused as exc:
        return {**found, "reason": exc.reason}
    return {
        **found,
        "valid": True,
        "reason": "valid",
        "kind": named.kind,
        "identifier_type": named.identifier_type,
        "identifier": named.masked,
    }


def _refuse_identity(reason: str, code: int, *, as_json: bool) -> NoReturn:
    if as_json:
        echo_json(
            {
                "valid": False,
                "reason": reason,
                "ca": None,
                "kind": None,
                "identifier_type": None,
                "identifier": None,
            }
        )
    else:
        click.echo(f"idp: {reason}", err=True)
    raise SystemExit(code)


@click.command("sign-challenge")
@click.option("--key", "key_file", required=True, metavar="FILE", help="Private key (PEM).")
@click.option("--cert", "cert_file", required=True, metavar="FILE", help="Certificate (PEM).")
@click.option("--challenge", required=True, help="The challenge the sign-in page shows.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON.")
def sign_challenge_command(key_file: str, cert_file: str, challenge: str, as_json: bool) -> None:
    """Sign a sign-in challenge as a USB key's driver would, and print the form fields
    `certificate` (PEM) and `signature` (base64) to paste into /login/certificate.
    For testing and the demo: a real key never leaves its USB device.

    Exit 0 signed, 1 refused (key and certificate do not match, unreadable files), 2 usage."""
    try:
        key = _read(key_file, "--key")
        certificate = _read(cert_file, "--cert")
        fields = sign_challenge(key, certificate, challenge)
    except _Refused as exc:
        _fail_plain(exc.reason, exc.code, as_json=as_json)
    except ValueError as exc:
        _fail_plain(str(exc), EXIT_REFUSED, as_json=as_json)
    if as_json:
        echo_json(fields)
        return
    click.echo("certificate:")
    click.echo(fields["certificate"].rstrip("\n"))
    click.echo("signature:")
    click.echo(fields["signature"])


def _fail_plain(reason: str, code: int, *, as_json: bool) -> NoReturn:
    if as_json:
        echo_json({"error": reason})
    else:
        click.echo(f"idp: {reason}", err=True)
    raise SystemExit(code)
