"""``idp pki demo``: make and register the demo PKI (``pki.demo``), and say what a
person can try with it. ``idp demo`` runs the same and serves the CA services.

Exit codes as for the other ``idp pki`` commands: 0 done, 1 refused (the reason on
stderr, or ``{"error": ...}`` with ``--json``), 2 usage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from idp.core.cli_support import EXIT_REFUSED, EXIT_USAGE, echo_json, fail, with_app
from idp.core.runtime import db
from pki.container import Pki
from pki.demo import DemoPkiError, default_directory, default_services_url, run


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo CA files go (default <data_dir>/pki/demo).",
)
@click.option(
    "--services-url",
    metavar="URL",
    help=(
        "Where the demo CAs' CRLs and OCSP responders are served, written into the "
        "certificates (default http://<issuer host>:<issuer port + 10>; `idp demo` "
        "serves them there)."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print only JSON.")
@with_app
def demo(out: Path | None, services_url: str | None, as_json: bool) -> None:
    """Make a DEMO PKI (three local CAs: RSA with an intermediate, ECDSA, SM2) with
    citizen, enterprise and revoked certificates, and register it with the bridge.
    Safe to run again: the files are re-used and only what is missing is registered."""
    core = Pki.of().core
    directory = (out or default_directory(core.settings.data_dir)).absolute()
    url = services_url or default_services_url(core.settings.issuer)
    problem = _check_url(url)
    if problem is not None:
        _refuse(f"--services-url {url!r}: {problem}", EXIT_USAGE, as_json=as_json)
    url = url.rstrip("/")
    try:
        report = run(
            Pki.of().service(actor="demo"), directory, url, clock=core.clock, commit=db().commit
        )
        db().commit()
    except DemoPkiError as exc:
        db().rollback()
        _refuse(str(exc), EXIT_REFUSED, as_json=as_json)
    if as_json:
        echo_json(report)
        return
    for line in describe(report, issuer=core.settings.issuer, served=None):
        click.echo(line)


def describe(report: dict[str, Any], *, issuer: str, served: bool | None) -> list[str]:
    """What ``idp pki demo`` and ``idp demo`` print about the demo PKI; ``served``:
    whether ``idp demo`` serves its CA services (None: not ``idp demo``)."""
    banner = "!" * 72
    lines = [banner, "  DEMO PKI -- NOT FOR PRODUCTION", f"  {report['warning']}", banner]
    lines.append(f"  Files ({report['files']}): {report['directory']}")
    lines.append(f"  PKCS#12 password (every .p12): {report['pkcs12_password']}")
    bridge = report["bridge"]
    made = "created" if bridge["created"] else "existing"
    lines.append(f"  Bridge CA ({made}): {bridge['subject']}, {bridge['certificate']}")
    lines.extend(
        f"  {ca['name']:<9} {ca['key_type']:<3} revocation {ca['revocation']:<4} "
        f"{ca['registration']}; cross-certificate {ca['cross_certificate']}"
        for ca in report["cas"]
    )
    where = {
        None: "to be served (by `idp demo`) at",
        True: "served at",
        False: "NOT served (see above), though the certificates name",
    }[served]
    lines.append(f"  CRLs and OCSP {where} {report['services_url']}/")
    lines.append("  Certificates (key and .pem beside each .p12):")
    for certificate in report["certificates"]:
        note = "  REVOKED" if certificate["revoked"] else ""
        lines.append(
            f"    {certificate['ca']:<9} {certificate['role']:<10} {certificate['kind']:<12} "
            f"{certificate['identifier_masked']}  {certificate['pkcs12']}{note}"
        )
    first = next(c for c in report["certificates"] if c["role"] == "citizen")
    lines += [
        f"  Certificate sign-in: open {issuer.rstrip('/')}/login/certificate, copy the",
        "  challenge it shows, and sign it with a demo key (it stands in for the USB key):",
        f"    idp pki sign-challenge --key {first['key']} --cert {first['certificate']} \\",
        "      --challenge C",
        "  and paste the printed certificate and signature into the form. That",
        f"  certificate names the demo registry's person ({first['identifier_masked']}).",
        banner,
    ]
    return lines


def _check_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return "an http://HOST:PORT address is expected"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if port is None:
        return "give the port (http://HOST:PORT)"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "no path, query or fragment (the demo serves /crl/ and /ocsp/ under it)"
    if len(url) > 200:
        return "too long"
    return None


def _refuse(message: str, code: int, *, as_json: bool) -> NoReturn:
    if as_json:
        echo_json({"error": message})
        raise SystemExit(code)
    fail(message, code)
