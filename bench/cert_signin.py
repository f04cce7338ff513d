"""Benchmark: complete certificate sign-ins (challenge signing with a USB key) per
CPU-second of the server's processes (issue 11, section 6).

One sign-in is what a new browser with a USB key does: GET /login/certificate (a session
cookie, a CSRF token and the one-time ``challenge``), the key signs the challenge (here
``pki.challenge.sign_challenge`` in the load generator's process, standing in for the
driver), then POST /login/certificate with the challenge, the certificate (PEM) and the
signature, answered by 302 to /account. Every iteration uses a fresh cookie jar and
connection, so each does the full work; every certificate is already bound to its
account (the steady state: a citizen who signed in with it before).

    .venv/bin/python bench/cert_signin.py --duration 20
    .venv/bin/python bench/cert_signin.py --duration 20 --revocation soft

The PKI is made in the isolated environment before the server starts: the bridge, a
cross-certified local CA and its certificates through the operator CLI (``idp pki
init-bridge``, ``import-ca``, ``cross-certify``); an EC P-256 root with its own policy
OID mapped to the platform's; one person certificate per account, carrying a valid
resident ID number in the GM/T 0015 identity extension; each certificate bound to a new
account in-process, as ``/login/certificate/new`` does (``CertificateService.bind``:
the binding and a level-5 verification). With ``--revocation soft`` the CA names a CRL
served by a small HTTP server in this process, and its mode is ``soft``.

Besides the load run, in-process and warm, for the same certificates: the CPU of one
``TrustStore.validate`` (path validation through the bridge), of ``CertificateService
.check`` (that plus the identity rules), of the challenge signature's check, and of
the client's signing (the load generator's CPU, never counted as the server's).
Results: a summary on stdout and JSON in bench/results/cert_signin-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    HOST,
    REQUEST_TIMEOUT,
    Environment,
    LoadPlan,
    LoadResult,
    Probe,
    Recorder,
    Sample,
    Server,
    check_ranges,
    code_version,
    free_port,
    idp_executable,
    install_probes,
    interrupt_on_sigterm,
    latency_summary,
    machine_info,
    run_load,
    stopping,
    write_results,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from signin import CSRF, _cookie_header, _cookies

PLATFORM_POLICY = "2.25.1"  # the bridge's policy in this run
LOCAL_POLICY = "1.2.156.1.1"  # the local CA's, mapped to the platform's
GMT0015_IDENTITY_NUMBER = "1.2.156.10260.4.1.1"
CA_NAME = "bench-ca"
CRL_PATH = "/bench-ca.crl"
# accounts are made in-process and never sign in with a password: a cheap hash will do
SETUP_PASSWORD = "bench certificate passphrase 3c9e"
NAMES = ("王小丽", "李建国", "张伟", "刘洋", "陈静", "杨帆", "赵敏", "黄磊")
CHALLENGE = re.compile(rb'name="challenge" type="hidden" value="([^"]+)"')
BROWSER_HEADERS = {
    "User-Agent": "idp-bench/1 (cert-signin)",
    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
}


@dataclass(frozen=True)
class Credential:
    """A USB key's content: the certificate and its private key (PEM)."""

    certificate_pem: bytes
    key_pem: bytes

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.certificate_pem).public_bytes(
            serialization.Encoding.DER
        )


class CertificateSignIn:
    """One complete certificate sign-in by a new browser (fresh cookies and connection)."""

    def __init__(self, credentials: list[Credential]) -> None:
        self.credentials = credentials

    def __call__(self, port: int, sequence: int) -> Sample:
        from pki.challenge import sign_challenge

        credential = self.credentials[sequence % len(self.credentials)]
        jar: dict[str, str] = {}
        connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        start = time.monotonic()
        try:
            connection.request("GET", "/login/certificate", headers=BROWSER_HEADERS)
            page = connection.getresponse()
            body = page.read()
            _cookies(page, jar)
            token, challenge = CSRF.search(body), CHALLENGE.search(body)
            if page.status != 200 or token is None or challenge is None:
                return Sample(start, time.monotonic(), ok=False, error=f"GET {page.status}")
            sign_start = time.monotonic()
            fields = sign_challenge(
                credential.key_pem, credential.certificate_pem, challenge.group(1).decode()
            )
            form = urlencode(
                {
                    "csrf_token": token.group(1).decode(),
                    "challenge": fields["challenge"],
                    "certificate": fields["certificate"],
                    "signature": fields["signature"],
                }
            )
            post_start = time.monotonic()
            connection.request(
                "POST",
                "/login/certificate",
                body=form,
                headers={
                    **BROWSER_HEADERS,
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": _cookie_header(jar),
                    "Origin": f"http://{HOST}:{port}",
                    "Referer": f"http://{HOST}:{port}/login/certificate",
                },
            )
            answer = connection.getresponse()
            answer.read()
            end = time.monotonic()
            location = answer.getheader("Location") or ""
            ok = answer.status == 302 and location.endswith("/account")
            return Sample(
                start,
                end,
                ok=ok,
                phases={
                    "get": sign_start - start,
                    "sign": post_start - sign_start,
                    "post": end - post_start,
                },
                error=None if ok else f"POST {answer.status} {location}".strip(),
            )
        except (OSError, http.client.HTTPException) as exc:
            return Sample(start, time.monotonic(), ok=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()


# -- the local CA and its certificates --------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


@dataclass
class LocalCa:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, organisation: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _policies(oid: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(oid), None)])


def make_root() -> LocalCa:
    """The local CA's self-signed EC P-256 root, with its own policy OID."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name("Bench City CA", "Bench CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .add_extension(_policies(LOCAL_POLICY), critical=False)
        .sign(key, hashes.SHA256())
    )
    return LocalCa(certificate, key)


def resident_id(index: int) -> str:
    """A valid resident ID number (GB 11643: Chaoyang, Beijing; a birth date and
    sequence from ``index``; the MOD 11-2 check character of accounts.identifiers)."""
    from accounts.identifiers import check_person_id, id_check_char

    born = date(1960, 1, 1) + timedelta(days=index // 1000 * 7)
    body = f"110105{born:%Y%m%d}{index % 1000:03d}"
    number = body + id_check_char(body)
    assert check_person_id(number).valid, number
    return number


def _utf8_string(value: str) -> bytes:
    """DER UTF8String: the plain form of a GM/T 0015 identity extension."""
    raw = value.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def make_person(ca: LocalCa, cn: str, number: str, crl_url: str | None) -> Credential:
    """A person's EC P-256 certificate with the local policy and the GM/T 0015 number."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(_policies(LOCAL_POLICY), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(GMT0015_IDENTITY_NUMBER), _utf8_string(number)
            ),
            critical=False,
        )
    )
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(crl_url)], None, None, None
                    )
                ]
            ),
            critical=False,
        )
    certificate = builder.sign(ca.key, hashes.SHA256())
    return Credential(
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def make_crl(ca: LocalCa, revoked: int) -> bytes:
    """The local CA's CRL with ``revoked`` entries (none of them the benchmark's)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW - DAY)
        .next_update(NOW + 7 * DAY)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    for _ in range(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(x509.random_serial_number())
            .revocation_date(NOW - DAY)
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@contextlib.contextmanager
def crl_server(der: bytes) -> Iterator[tuple[str, list[int]]]:
    """Serves ``der`` at CRL_PATH on a free port: (the URL, a one-item fetch counter)."""
    fetches = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != CRL_PATH:
                self.send_error(404)
                return
            fetches[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            self.send_header("Content-Length", str(len(der)))
            self.end_headers()
            self.wfile.write(der)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the hook's
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}{CRL_PATH}", fetches
    finally:
        server.shutdown()
        server.server_close()


# -- setup through the operator CLI and the services ------------------------------------


def pki_cli(environment: Environment, issuer: str, *args: str) -> Any:
    """``idp pki ARGS --json`` against the environment's settings; its JSON answer."""
    done = subprocess.run(
        [idp_executable(), "pki", *args, "--json"],
        env=environment.env(IDP_ISSUER=issuer),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"idp pki {args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}"
        )
    return json.loads(done.stdout)


def register_ca(
    environment: Environment, issuer: str, ca: LocalCa, revocation: str, crl_url: str | None
) -> None:
    root = environment.data_dir / "bench-ca-root.pem"
    root.write_bytes(ca.pem)
    pki_cli(environment, issuer, "init-bridge", "--policy", PLATFORM_POLICY)
    extra = ["--crl-url", crl_url] if crl_url else []
    pki_cli(
        environment, issuer, "import-ca", "--name", CA_NAME, "--root", str(root),
        "--policy-map", f"{LOCAL_POLICY}={PLATFORM_POLICY}",
        "--identity", f"person:ext:{GMT0015_IDENTITY_NUMBER}",
        "--revocation", revocation, *extra,
    )  # fmt: skip
    pki_cli(environment, issuer, "cross-certify", CA_NAME)


def _timed(function: Callable[[int], object], samples: int, count: int) -> dict[str, float]:
    """CPU and wall milliseconds per call of ``function(i)``, after one warm pass."""
    for index in range(count):
        function(index)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for index in range(samples):
        function(index % count)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_ms": round(cpu / samples * 1000, 3), "wall_ms": round(wall / samples * 1000, 3)}


# (depth, module, attribute path, label): the steps of a sign-in timed in-process
PROBES: list[Probe] = [
    (0, "flask.app", "Flask.wsgi_app", "whole request inside Flask"),
    (1, "flask.app", "Flask.preprocess_request", "before_request hooks (session, CSRF check)"),
    (1, "pki.challenge", "Challenges.issue", "challenge issued (Redis SET)"),
    (1, "jinja2.environment", "Template.render", "template rendering"),
    (1, "flask_wtf.csrf", "generate_csrf", "CSRF token generation"),
    (1, "pki.challenge", "Challenges.consume", "challenge consumed (Redis)"),
    (1, "pki.views", "verify_challenge_signature", "challenge signature check"),
    (1, "pki.certificates", "CertificateService.check", "certificate check"),
    (2, "pki.truststore", "TrustStore.validate", "TrustStore.validate"),
    (3, "pki.truststore", "TrustStore.snapshot", "trust store version query"),
    (3, "pki.truststore", "validate", "RFC 5280 path validation (pyhanko)"),
    (2, "pki.certificates", "extract_identity", "identity rules"),
    (1, "pki.certificates", "CertificateService.holder", "account of the certificate"),
    (1, "pki.certificates", "CertificateService.signed_in", "binding used, level kept, COMMIT"),
    (1, "idp.login.flow", "LoginFlow.proved", "sign-in completed (session, audit)"),
    (2, "idp.core.audit.services", "AuditLog.record", "audit event"),
    (1, "flask.app", "Flask.process_response", "after_request hooks (session save)"),
    (1, "sqlalchemy.engine.base", "Connection._execute_context", "SQL statements (all)"),
    (1, "idp.core.store", "RedisStore._call", "Redis commands (all)"),
]


def bind_and_measure(
    environment: Environment,
    issuer: str,
    usernames: list[str],
    credentials: list[Credential],
    *,
    samples: int,
    breakdown: int,
) -> dict[str, Any]:
    """Bind each certificate to a new account (what /login/certificate/new does), then
    time the POST's costly steps one by one (``samples`` calls each), and ``breakdown``
    whole sign-ins through Flask's test client with every step in PROBES timed."""
    from accounts.container import Accounts
    from config.settings import build_settings
    from idp.app import create_app
    from idp.core.runtime import db
    from pki.container import Pki

    recorder = Recorder()
    if breakdown:
        # before the app exists: the lean layer in front of Flask keeps the (wrapped)
        # Flask.wsgi_app it finds when the app is built
        absent = install_probes(recorder, PROBES)
        if absent:
            raise RuntimeError(f"probes not found in the code measured: {absent}")
    settings = build_settings(
        environment.settings_values(
            issuer=issuer,
            argon2_memory_kib=8,
            argon2_time_cost=1,
            allow_weak_password_hashing=True,
        )
    )
    app = create_app(settings)  # the Redis store, as the server's
    ders = [credential.der for credential in credentials]
    measured: dict[str, Any] = {"samples": samples, "breakdown_signins": breakdown}
    try:
        with app.app_context():
            pki = Pki.of()
            measured["revocation_checker_wired"] = pki.checker is not None
            accounts = Accounts.of().account_service(actor="bench")
            service = pki.certificates(actor="bench")
            for username, der in zip(usernames, ders, strict=True):
                service.bind(accounts.register(username, SETUP_PASSWORD), service.check(der))
            if samples:
                measured.update(_time_steps(pki, service, credentials, ders, samples))
            db().rollback()
        if breakdown:
            measured["breakdown"] = _breakdown(app, recorder, credentials, breakdown)
    finally:
        app.extensions["idp.runtime"].database.dispose()
    return measured


def _time_steps(
    pki: Any, service: Any, credentials: list[Credential], ders: list[bytes], samples: int
) -> dict[str, Any]:
    from idp.core.runtime import db
    from pki.challenge import sign_challenge, verify_challenge_signature
    from pki.validation import ValidationOptions

    options = ValidationOptions(anchors=(), revocation=None)

    def validate(index: int) -> None:
        result = pki.trust.validate(db(), ders[index], options)
        assert result.valid, result.reason

    challenge = "idp-login:" + "A" * 43
    signed = [sign_challenge(c.key_pem, c.certificate_pem, challenge) for c in credentials]
    count = len(credentials)
    return {
        "trust_validate": _timed(validate, samples, count),
        "certificate_check": _timed(lambda i: service.check(ders[i]), samples, count),
        "challenge_signature_verify": _timed(
            lambda i: verify_challenge_signature(ders[i], challenge, signed[i]["signature"]),
            samples,
            count,
        ),
        "client_sign_challenge": _timed(
            lambda i: sign_challenge(
                credentials[i].key_pem, credentials[i].certificate_pem, challenge
            ),
            samples,
            count,
        ),
    }


def _breakdown(
    app: Any, recorder: Recorder, credentials: list[Credential], count: int
) -> dict[str, Any]:
    """Serial sign-ins through the test client: thread CPU per request and per step."""
    from pki.challenge import sign_challenge

    totals = {"GET": 0.0, "POST": 0.0}

    def sign_in(index: int) -> None:
        credential = credentials[index % len(credentials)]
        client = app.test_client()  # a new browser: no cookies
        recorder.phase = "GET"
        started = time.thread_time()
        page = client.get("/login/certificate", headers=BROWSER_HEADERS)
        totals["GET"] += time.thread_time() - started
        token, challenge = CSRF.search(page.data), CHALLENGE.search(page.data)
        assert page.status_code == 200
        assert token is not None
        assert challenge is not None
        fields = sign_challenge(
            credential.key_pem, credential.certificate_pem, challenge.group(1).decode()
        )
        form = {"csrf_token": token.group(1).decode(), **fields}
        recorder.phase = "POST"
        started = time.thread_time()
        answer = client.post("/login/certificate", data=form, headers=BROWSER_HEADERS)
        totals["POST"] += time.thread_time() - started
        if answer.status_code != 302 or not answer.location.endswith("/account"):
            raise RuntimeError(f"sign-in answered {answer.status_code} {answer.location}")

    for index in range(min(count, 30)):  # warm-up
        sign_in(index)
    recorder.reset()
    totals = dict.fromkeys(totals, 0.0)
    for index in range(count):
        sign_in(index)
    steps: dict[str, list[dict[str, Any]]] = {}
    for phase in ("GET", "POST"):
        steps[phase] = [
            {
                "step": label,
                "depth": depth,
                "cpu_ms": round(recorder.seconds[(phase, label)] / count * 1000, 3),
                "calls": round(recorder.calls[(phase, label)] / count, 2),
            }
            for depth, _module, _path, label in PROBES
            if recorder.calls[(phase, label)]
        ]
    return {
        "cpu_ms_per_request": {phase: round(totals[phase] / count * 1000, 3) for phase in totals},
        "steps": steps,
    }


# -- the run ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--workers", type=int, default=2, help="server worker processes (default 2)"
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="simultaneous simulated browsers (default 4)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="measured seconds (default 20; with --count, the upper bound, default 600)",
    )
    parser.add_argument(
        "--count", type=int, default=None, help="end the measured phase after this many sign-ins"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument(
        "--users", type=int, default=100, help="accounts, one bound certificate each"
    )
    parser.add_argument(
        "--revocation",
        choices=("off", "soft"),
        default="off",
        help="the local CA's revocation mode (soft: a CRL served locally)",
    )
    parser.add_argument(
        "--crl-entries", type=int, default=1000, help="revoked entries in the CRL (soft)"
    )
    parser.add_argument(
        "--step-samples",
        type=int,
        default=300,
        help="in-process calls timed per step (validation, signature, signing; 0: skip)",
    )
    parser.add_argument(
        "--breakdown",
        type=int,
        default=200,
        help="in-process sign-ins with each step's CPU timed (0: skip)",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 600.0 if args.count else 20.0
    limits = {
        "workers": (1, 64),
        "threads": (1, 64),
        "concurrency": (1, 256),
        "users": (1, 20_000),
        "crl_entries": (0, 100_000),
        "step_samples": (0, 100_000),
        "breakdown": (0, 100_000),
    }
    check_ranges(parser, args, limits)
    if not 0 < args.duration <= 3600 or not 0 <= args.warmup <= 600:
        parser.error("--duration must be in (0, 3600] and --warmup in [0, 600]")
    if args.count is not None and not 1 <= args.count <= 10_000_000:
        parser.error("--count must be positive")
    return args


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summarise(
    args: argparse.Namespace,
    result: LoadResult,
    steps: dict[str, Any],
    server: Server,
    setup_seconds: float,
    crl_fetches: int | None,
) -> dict[str, Any]:
    measured = result.measured()
    ok = [s for s in measured if s.ok]
    failed = [s for s in measured if not s.ok]
    all_failed = [s for s in result.samples if not s.ok]
    wall = result.wall_seconds
    cpu = result.server_cpu_seconds
    per_signin_cpu_ms = cpu / len(ok) * 1000 if ok else None
    report: dict[str, Any] = {
        "benchmark": "cert_signin",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "code": code_version(),
        "config": {
            "backend": "production (PostgreSQL + Redis)",
            "workers": args.workers,
            "threads": args.threads,
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "count": args.count,
            "users": args.users,
            "certificates": "EC P-256, leaf -> cross-certificate -> bridge (EC P-256 root)",
            "revocation": args.revocation,
            "crl_entries": args.crl_entries if args.revocation == "soft" else None,
        },
        "steps_in_process": steps,
        "results": {
            "signins": len(ok),
            "failed": len(failed),
            "failed_including_warmup": len(all_failed),
            "failure_examples": sorted({s.error or "?" for s in all_failed})[:10],
            "wall_s": round(wall, 3),
            "server_cpu_s": round(cpu, 3),
            "server_system_cpu_s": round(result.server_system_cpu_seconds, 3),
            "server_cpu_utilisation": round(cpu / wall, 3) if wall else None,
            "signins_per_server_cpu_s": round(len(ok) / cpu, 2) if cpu else None,
            "signins_per_wall_s": round(len(ok) / wall, 2) if wall else None,
            "server_cpu_ms_per_signin": _ms(per_signin_cpu_ms),
            "server_cpu_by_process": result.cpu_by_process(),
            "load_generator_cpu_s": round(result.client_cpu_seconds, 3),
            "load_generator_cpu_ms_per_signin": _ms(
                result.client_cpu_seconds / len(ok) * 1000 if ok else None
            ),
            "postgres_backends_cpu_s": None
            if result.database_cpu_seconds is None
            else round(result.database_cpu_seconds, 3),
            "redis_server_cpu_s": None
            if result.redis_cpu_seconds is None
            else round(result.redis_cpu_seconds, 3),
            "machine_busy_cpu_s": round(result.machine_busy_cpu_seconds, 3),
            "other_processes_cpu_s": round(
                result.machine_busy_cpu_seconds
                - cpu
                - result.client_cpu_seconds
                - (result.database_cpu_seconds or 0.0)
                - (result.redis_cpu_seconds or 0.0),
                3,
            ),
            "worker_pids_changed": result.worker_pids_changed,
            "crl_fetches": crl_fetches,
            "latency_post": latency_summary([s.phases["post"] for s in ok]),
            "latency_get": latency_summary([s.phases["get"] for s in ok]),
            "latency_client_sign": latency_summary([s.phases["sign"] for s in ok]),
            "latency_signin": latency_summary([s.end - s.start for s in ok]),
        },
        "server_log_lines": server.log_problems()[:50],
        "setup_s": round(setup_seconds, 1),
    }
    if "trust_validate" in steps and per_signin_cpu_ms:
        shares = report["results"]
        for key in ("trust_validate", "certificate_check", "challenge_signature_verify"):
            shares[f"{key}_share_of_signin_cpu"] = round(
                steps[key]["cpu_ms"] / per_signin_cpu_ms, 3
            )
    return report


def print_summary(report: dict[str, Any]) -> None:
    config, results, steps = report["config"], report["results"], report["steps_in_process"]
    machine = report["machine"]
    print()
    print(f"Certificate sign-in benchmark — {config['backend']}, revocation {config['revocation']}")
    print(
        f"  machine      {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}"
    )
    print(
        f"  server       {config['workers']} workers x {config['threads']} threads; "
        f"load: {config['concurrency']} concurrent browsers, {config['users']} certificates"
    )
    if "trust_validate" in steps:
        print(
            f"  in-process   TrustStore.validate {steps['trust_validate']['cpu_ms']} ms CPU, "
            f"CertificateService.check {steps['certificate_check']['cpu_ms']} ms, "
            f"challenge signature check {steps['challenge_signature_verify']['cpu_ms']} ms"
        )
        print(
            f"  client       sign_challenge {steps['client_sign_challenge']['cpu_ms']} ms CPU "
            "(the USB key's work: not server CPU)"
        )
    if config["revocation"] != "off" and not steps["revocation_checker_wired"]:
        print(
            "  WARNING: this build wires no revocation checker (pki.container builds "
            "TrustStore(None)): soft mode checks nothing"
        )
    print(
        f"  sign-ins     {results['signins']} in {results['wall_s']} s "
        f"({results['failed']} failed; {results['failed_including_warmup']} incl. warm-up)"
    )
    print(
        f"  server CPU   {results['server_cpu_s']} s "
        f"({results['server_system_cpu_s']} s system; "
        f"{results['server_cpu_utilisation']} cores busy), "
        f"{results['server_cpu_ms_per_signin']} ms per sign-in"
    )
    print(f"  => {results['signins_per_server_cpu_s']} sign-ins per server CPU-second")
    print(f"     {results['signins_per_wall_s']} sign-ins per wall-second")
    if "trust_validate_share_of_signin_cpu" in results:
        print(
            f"     path validation is {results['trust_validate_share_of_signin_cpu']:.0%} of "
            f"the server CPU per sign-in (check incl. identity "
            f"{results['certificate_check_share_of_signin_cpu']:.0%}, signature check "
            f"{results['challenge_signature_verify_share_of_signin_cpu']:.0%})"
        )
    if "breakdown" in steps:
        print_breakdown(steps["breakdown"], steps["breakdown_signins"])
    for label, key in (
        ("POST /login/certificate", "latency_post"),
        ("GET /login/certificate ", "latency_get"),
        ("client signing         ", "latency_client_sign"),
        ("GET+sign+POST          ", "latency_signin"),
    ):
        lat = results[key]
        if lat:
            print(
                f"  {label}  p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  "
                f"p99 {lat['p99_ms']} ms  (max {lat['max_ms']} ms)"
            )
    per_signin = results["load_generator_cpu_ms_per_signin"]
    other = [f"load generator {results['load_generator_cpu_s']} s ({per_signin} ms per sign-in)"]
    if results["postgres_backends_cpu_s"] is not None:
        other.append(f"PostgreSQL backends {results['postgres_backends_cpu_s']} s")
    if results["redis_server_cpu_s"] is not None:
        other.append(f"redis-server {results['redis_server_cpu_s']} s")
    print(f"  other CPU    {', '.join(other)} (not counted above)")
    if results["crl_fetches"] is not None:
        print(f"  CRL          fetched {results['crl_fetches']} time(s) from the local server")
    print(
        f"  noise        the machine was busy {results['machine_busy_cpu_s']} CPU-s in the window, "
        f"{results['other_processes_cpu_s']} s of it by unrelated processes"
    )
    capacity = results["wall_s"] * (machine["nproc"] or 1)
    disturbed = results["other_processes_cpu_s"] / capacity if capacity else 0.0
    if disturbed > 0.1:
        print(
            f"  WARNING: unrelated processes used {disturbed:.0%} of the machine "
            "during the window; wall-clock figures and latencies are disturbed"
        )
    if results["worker_pids_changed"]:
        print("  WARNING: a worker was replaced during the measured phase")
    if results["failure_examples"]:
        print(f"  failures: {results['failure_examples']}")
    if report["server_log_lines"]:
        print(f"  server log: {len(report['server_log_lines'])} line(s), first:")
        for line in report["server_log_lines"][:5]:
            print(f"    {line}")


def print_breakdown(breakdown: dict[str, Any], count: int) -> None:
    print(
        f"  breakdown    thread CPU per request over {count} serial in-process sign-ins "
        "(Flask test client, without the WSGI server), ms:"
    )
    for phase, rows in breakdown["steps"].items():
        print(f"    {phase} {breakdown['cpu_ms_per_request'][phase]} ms")
        for row in rows:
            indent = "  " * row["depth"]
            print(f"      {indent}{row['step']:<52} {row['cpu_ms']:>7} ({row['calls']:g} calls)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    began = time.monotonic()
    usernames = [f"cert{index:05d}" for index in range(args.users)]
    with contextlib.ExitStack() as stack:
        environment = stack.enter_context(
            Environment(
                embedded=False,
                database_url=args.database_url,
                redis_url=args.redis_url,
                tag="certsignin",
            )
        )
        print(f"setting up in {environment.data_dir} ...", flush=True)
        environment.init()
        port = free_port()
        issuer = f"http://{HOST}:{port}"  # the bridge CRL's URL in the cross-certificate
        ca = make_root()
        crl_url, fetches = None, None
        if args.revocation == "soft":
            crl_url, fetches = stack.enter_context(crl_server(make_crl(ca, args.crl_entries)))
        register_ca(environment, issuer, ca, args.revocation, crl_url)
        credentials = [
            make_person(ca, NAMES[index % len(NAMES)], resident_id(index), crl_url)
            for index in range(args.users)
        ]
        steps = bind_and_measure(
            environment,
            issuer,
            usernames,
            credentials,
            samples=args.step_samples,
            breakdown=args.breakdown,
        )
        server = Server(
            environment.env(),
            workers=args.workers,
            threads=args.threads,
            log_path=environment.data_dir / "server.log",
            port=port,
        )
        with stopping(server):
            server.start()
            setup_seconds = time.monotonic() - began
            print(
                f"server up at {server.url}; warm-up {args.warmup:g} s, then "
                f"{'up to ' if args.count else ''}{args.duration:g} s measured ...",
                flush=True,
            )
            result = run_load(
                server,
                CertificateSignIn(credentials),
                LoadPlan(args.concurrency, args.warmup, args.duration, args.count),
                database_pids=environment.database_backend_pids,
            )
        report = summarise(
            args, result, steps, server, setup_seconds, None if fetches is None else fetches[0]
        )
        print_summary(report)
        if not args.no_save:
            path = write_results("cert_signin", report, server.log_path)
            shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            print(f"  written      {shown}")
    failed = report["results"]["failed_including_warmup"]
    return 1 if failed or not report["results"]["signins"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; server stopped, schema, Redis keys and data dir removed")
        sys.exit(130)
