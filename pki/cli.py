"""``idp pki ...``: the bridge CA and the city's local CAs.

Exit codes: 0 success, 1 refused (the reason on stderr, or as ``{"error": ...}`` with
``--json``), 2 usage. With ``--json`` a command prints JSON only.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, NoReturn

import click

from idp.core.cli_support import echo_json, fail, with_app
from idp.core.runtime import Runtime, db
from pki.builder import CrossConstraints
from pki.container import Pki
from pki.demo_cli import demo as demo_command
from pki.models import BridgeCa, CrossCertificate, LocalCa
from pki.services import REVOCATION_MODES, CaRequest, PkiError, PkiService, parse_dn
from pki.validation import BadInput, load_certificates
from pki.verify_cli import identity as identity_command
from pki.verify_cli import sign_challenge_command
from pki.verify_cli import verify as verify_command

MAX_FILE_BYTES = 1 << 20


def _refuse(message: str, *, as_json: bool) -> NoReturn:
    if as_json:
        echo_json({"error": message})
        raise SystemExit(1)
    fail(message)


def read_certificate(path: Path, option: str) -> bytes:
    """One certificate (PEM or DER) from a file, as DER; PkiError when it is not one."""
    data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    if len(data) > MAX_FILE_BYTES:
        raise PkiError(f"{option} {path}: larger than a certificate can be")
    try:
        return load_certificates(data, limit=1)[0]
    except BadInput as exc:
        raise PkiError(f"{option} {path}: not a PEM or DER certificate ({exc.reason})") from None


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def bridge_json(bridge: BridgeCa) -> dict[str, Any]:
    return {
        "subject": bridge.subject,
        "certificate_pem": _pem(bridge.certificate_der),
        "policies": list(bridge.policies),
        "crl_number": bridge.crl_number,
        "created_at": bridge.created_at.isoformat(),
    }


def ca_json(ca: LocalCa) -> dict[str, Any]:
    cross = PkiService.live_cross_certificate(ca)
    last: CrossCertificate | None = ca.cross_certificates[-1] if ca.cross_certificates else None
    return {
        "name": ca.name,
        "subject": ca.subject,
        "status": ca.status.value,
        "policy_map": [{"local": local, "platform": mapped} for local, mapped in ca.policy_map],
        "identity_rules": list(ca.identity_rules),
        "crl_urls": list(ca.crl_urls),
        "ocsp_url": ca.ocsp_url,
        "revocation": ca.revocation,
        "root_pem": _pem(ca.root_der),
        "intermediates": len(ca.intermediates),
        "cross_certificate_pem": None if cross is None else _pem(cross.certificate_der),
        "cross_certificate_serial": None if last is None else last.serial,
        "cross_certificate_not_after": None if last is None else last.not_after.isoformat(),
        "cross_certificate_revoked_at": (
            None if last is None or last.revoked_at is None else last.revoked_at.isoformat()
        ),
    }


def _service() -> PkiService:
    return Pki.of().service(actor="cli")


def _policy_pair(value: str) -> tuple[str, str]:
    local, sep, platform = value.partition("=")
    if not sep or not local.strip() or not platform.strip():
        raise click.BadParameter(f"{value!r}: expected LOCAL_OID=PLATFORM_OID")
    return local.strip(), platform.strip()


_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@click.group("pki")
def pki_group() -> None:
    """The bridge CA and the city's local certificate authorities."""


@pki_group.command("init-bridge")
@click.option("--subject", help="The bridge's RFC 4514 DN (default: the documented one).")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    help="A platform policy OID (repeat; default: the documented platform OID).",
)
@click.option("--json", "as_json", is_flag=True)
@with_app
def init_bridge(subject: str | None, policies: tuple[str, ...], as_json: bool) -> None:
    """Create the bridge CA (once): its key under the data directory and its
    self-signed certificate."""
    try:
        bridge = _service().init_bridge(subject, policies)
        db().commit()
    except PkiError as exc:
        _refuse(str(exc), as_json=as_json)
    if as_json:
        echo_json(bridge_json(bridge))
    else:
        click.echo(f"bridge CA created: {bridge.subject} (policies {', '.join(bridge.policies)})")


@pki_group.command("import-ca")
@click.option("--name", required=True, help="A short name for the CA (e.g. gdca).")
@click.option("--root", type=_FILE, required=True, help="Its self-signed root (PEM or DER).")
@click.option("--intermediate", "intermediates", type=_FILE, multiple=True)
@click.option(
    "--policy-map",
    "policy_map",
    multiple=True,
    required=True,
    help="LOCAL_OID=PLATFORM_OID (repeat).",
)
@click.option(
    "--identity",
    "rules",
    multiple=True,
    help="KIND:SOURCE, tried in order (default: the documented rules).",
)
@click.option("--crl-url", "crl_urls", multiple=True)
@click.option("--ocsp-url")
@click.option(
    "--revocation", type=click.Choice(REVOCATION_MODES), default="hard", show_default=True
)
@click.option("--json", "as_json", is_flag=True)
@with_app
def import_ca(
    name: str,
    root: Path,
    intermediates: tuple[Path, ...],
    policy_map: tuple[str, ...],
    rules: tuple[str, ...],
    crl_urls: tuple[str, ...],
    ocsp_url: str | None,
    revocation: str,
    as_json: bool,
) -> None:
    """Register a local CA (not trusted until it is cross-certified)."""
    pairs = tuple(_policy_pair(value) for value in policy_map)
    try:
        request = CaRequest(
            name=name,
            root=read_certificate(root, "--root"),
            intermediates=tuple(read_certificate(p, "--intermediate") for p in intermediates),
            policy_map=pairs,
            identity_rules=_identity_rules(rules),
            crl_urls=tuple(_url(url, "--crl-url") for url in crl_urls),
            ocsp_url=None if ocsp_url is None else _url(ocsp_url, "--ocsp-url"),
            revocation=revocation,
        )
        ca = _service().import_ca(request)
        db().commit()
    except PkiError as exc:
        _refuse(str(exc), as_json=as_json)
    if as_json:
        echo_json(ca_json(ca))
    else:
        click.echo(f"{ca.name}: imported ({ca.subject}); cross-certify it to trust it")


@pki_group.command("import-configured")
@click.option("--json", "as_json", is_flag=True)
@with_app
def import_configured(as_json: bool) -> None:
    """Register every CA of the settings' [[local_cas]] not registered yet (as
    import-ca would); a name already registered is left as it is."""
    service = _service()
    report = []
    for entry in Runtime.of().settings.local_cas:
        if service.find_ca(entry.name) is not None:
            report.append({"name": entry.name, "status": "already_registered"})
            continue
        where = f"local_cas {entry.name}:"
        try:
            request = CaRequest(
                name=entry.name,
                root=read_certificate(entry.root, f"{where} root"),
                intermediates=tuple(
                    read_certificate(path, f"{where} intermediates") for path in entry.intermediates
                ),
                policy_map=tuple((m.local, m.platform) for m in entry.policy_map),
                identity_rules=tuple(f"{r.kind}:{r.source}" for r in entry.identity_rules),
                crl_urls=tuple(str(url) for url in entry.crl_urls),
                ocsp_url=None if entry.ocsp_url is None else str(entry.ocsp_url),
                revocation=entry.revocation,
            )
            ca = service.import_ca(request)
            db().commit()
        except PkiError as exc:
            db().rollback()
            _refuse(f"{where} {exc}", as_json=as_json)
        report.append({"name": ca.name, "status": "imported", "subject": ca.subject})
    if as_json:
        echo_json(report)
        return
    for row in report:
        click.echo(f"{row['name']}: {row['status'].replace('_', ' ')}")
    if any(row["status"] == "imported" for row in report):
        click.echo("cross-certify the imported CAs to trust them (idp pki cross-certify NAME)")


@pki_group.command("cross-certify")
@click.argument("name")
@click.option("--require-explicit-policy", type=click.IntRange(0, 64))
@click.option("--inhibit-policy-mapping", type=click.IntRange(0, 64))
@click.option("--inhibit-any-policy", type=click.IntRange(0, 64))
@click.option("--permitted-subtree", "subtrees", multiple=True, help="An RFC 4514 DN (repeat).")
@click.option("--json", "as_json", is_flag=True)
@with_app
def cross_certify(
    name: str,
    require_explicit_policy: int | None,
    inhibit_policy_mapping: int | None,
    inhibit_any_policy: int | None,
    subtrees: tuple[str, ...],
    as_json: bool,
) -> None:
    """Issue the bridge -> local-root cross-certificate (policy mappings included)."""
    try:
        constraints = CrossConstraints(
            require_explicit_policy=require_explicit_policy,
            inhibit_policy_mapping=inhibit_policy_mapping,
            inhibit_any_policy=inhibit_any_policy,
            permitted_subtrees=tuple(parse_dn(dn).public_bytes() for dn in subtrees),
        )
        service = _service()
        cross = service.cross_certify(name, constraints)
        db().commit()
    except PkiError as exc:
        _refuse(str(exc), as_json=as_json)
    if as_json:
        echo_json(ca_json(cross.local_ca))
    else:
        click.echo(
            f"{name}: cross-certified (serial {cross.serial}, until {cross.not_after:%Y-%m-%d})"
        )


@pki_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def list_cas(as_json: bool) -> None:
    """The bridge and the registered CAs."""
    service = _service()
    bridge = service.bridge()
    cas = service.cas()
    if as_json:
        echo_json(
            {
                "bridge": None if bridge is None else bridge_json(bridge),
                "cas": [ca_json(ca) for ca in cas],
            }
        )
        return
    if bridge is None:
        click.echo("no bridge CA (run `idp pki init-bridge`)")
    else:
        click.echo(f"bridge\t{bridge.subject}\t{', '.join(bridge.policies)}")
    for ca in cas:
        click.echo(f"{ca.name}\t{ca.status.value}\t{ca.subject}")


@pki_group.command("revoke-cross-cert")
@click.argument("name")
@click.option(
    "--reason",
    type=click.Choice(
        ["cessation_of_operation", "ca_compromise", "superseded", "affiliation_changed"]
    ),
    default="cessation_of_operation",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True)
@with_app
def revoke_cross_cert(name: str, reason: str, as_json: bool) -> None:
    """Revoke a CA's cross-certificate: the CA is cut off at once (every mode)."""
    try:
        cross = _service().revoke_cross_cert(name, reason)
        db().commit()
    except PkiError as exc:
        _refuse(str(exc), as_json=as_json)
    if as_json:
        echo_json(ca_json(cross.local_ca))
    else:
        click.echo(f"{name}: cross-certificate {cross.serial} revoked ({reason})")


@pki_group.command("crl")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="Where to write the bridge's CRL (DER).",
)
@with_app
def write_crl(out: Path) -> None:
    """Write the bridge's current CRL (DER; also served at /pki/bridge.crl)."""
    try:
        der = _service().crl()
        db().commit()
    except PkiError as exc:
        fail(str(exc))
    try:
        out.write_bytes(der)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    click.echo(f"wrote {out} ({len(der)} bytes)")


def _identity_rules(rules: tuple[str, ...]) -> tuple[str, ...]:
    return rules


def _url(value: str, option: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) > 500:
        raise PkiError(f"{option} {value!r}: an http(s) URL is expected")
    return value


pki_group.add_command(verify_command)
pki_group.add_command(identity_command)
pki_group.add_command(sign_challenge_command)
pki_group.add_command(demo_command)

COMMANDS = (pki_group,)
