"""Benchmark: certificate validations through the bridge per CPU-second, with CRL
checking, cold (empty caches) and warm, for 3, 30 and 300 registered local CAs.

One validation is what certificate sign-in does with a certificate
(``Pki.of().trust.validate``): the trust store's snapshot check (one aggregate query),
RFC 5280 path validation by pyhanko from the leaf through the CA's cross-certificate to
the bridge with the platform policy required, and the leaf's revocation status from its
CA's CRL (fetched over HTTP from a local server, indexed, cached until nextUpdate).

* warm, new certificate ("new"): the store and the CRL indexes are filled; each
  validation takes a certificate not seen before (more leaves than the decoding cache
  holds, and the path cache emptied), so the leaf is decoded and its path built and
  validated every time, as for a user's first sign-in.
* warm, certificate seen before ("seen"): 200 certificates again and again (the same
  USB keys signing in daily): the validated path comes from the trust store's path
  cache; the revocation status is still looked up in the CRL index every time.
* cold: before each validation a new trust store and revocation checker and empty
  decoding caches, so the snapshot is rebuilt, the CRL fetched and indexed and every
  certificate decoded; the CRL server runs in this process, so its CPU is counted too.

    .venv/bin/python bench/pki_validation.py            # 3, 30, 300 CAs
    .venv/bin/python bench/pki_validation.py --cas 3 --seconds 3

Runs in one process on the embedded database (SQLite) in a temporary directory,
removed at the end. Reports CPU time (``time.process_time``) per validation.
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PLATFORM = "2.25.1"
DAY = timedelta(days=1)


class _Crls(http.server.BaseHTTPRequestHandler):
    crls: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.crls.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def crl_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Crls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _policies(oid: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(oid), None)])


def make_ca(number: int, now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"Bench Local CA {number}")
    usage = x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_policies(f"1.2.156.9.{number}"), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def make_leaf(
    ca: x509.Certificate, key: ec.EllipticCurvePrivateKey, number: int, policy: str, now: datetime
) -> bytes:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Bench Person {number}"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 90 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .add_extension(_policies(policy), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def make_crl(
    ca: x509.Certificate, key: ec.EllipticCurvePrivateKey, entries: int, now: datetime
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - DAY)
        .next_update(now + 7 * DAY)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in range(1, entries + 1):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - DAY)
            .build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def build_platform(
    directory: Path, cas: int, leaves: int, base_url: str
) -> tuple[Any, list[bytes]]:
    """An app on SQLite with a bridge and ``cas`` cross-certified CAs whose CRLs the
    local server serves; ``leaves`` certificates spread over the CAs."""
    from config.settings import build_settings
    from idp.app import create_app
    from idp.cli import initialise
    from idp.core.runtime import db
    from pki.builder import CrossConstraints
    from pki.container import Pki
    from pki.services import CaRequest

    settings = build_settings(
        {"data_dir": str(directory), "issuer": "http://127.0.0.1:5000", "log_level": "WARNING"}
    )
    initialise(settings)
    app = create_app(settings)
    now = datetime.now(UTC)
    made: list[bytes] = []
    with app.app_context():
        service = Pki.of().service(actor="bench")
        service.init_bridge(None, [PLATFORM])
        db().commit()
        authorities = []
        for number in range(cas):
            certificate, key = make_ca(number, now)
            path = f"/crl/{number}.crl"
            _Crls.crls[path] = make_crl(certificate, key, 10, now)
            service.import_ca(
                CaRequest(
                    name=f"ca-{number}",
                    root=certificate.public_bytes(serialization.Encoding.DER),
                    intermediates=(),
                    policy_map=((f"1.2.156.9.{number}", PLATFORM),),
                    identity_rules=(),
                    crl_urls=(base_url + path,),
                    ocsp_url=None,
                    revocation="hard",
                )
            )
            service.cross_certify(f"ca-{number}", CrossConstraints())
            db().commit()
            authorities.append((certificate, key, f"1.2.156.9.{number}"))
        for index in range(leaves):
            certificate, key, policy = authorities[index % cas]
            made.append(make_leaf(certificate, key, index, policy, now))
    return app, made


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    return {
        "p50_ms": round(at(0.50), 3),
        "p90_ms": round(at(0.90), 3),
        "p99_ms": round(at(0.99), 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def measure(
    validate: Callable[[bytes], bool],
    leaves: list[bytes],
    seconds: float,
    prepare: Callable[[], None],
) -> dict[str, Any]:
    cpu_times: list[float] = []
    wall_times: list[float] = []
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline:
        prepare()
        leaf = leaves[index % len(leaves)]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        ok = validate(leaf)
        cpu_times.append(time.process_time() - cpu0)
        wall_times.append(time.perf_counter() - wall0)
        if not ok:
            raise SystemExit("a validation failed: the benchmark's PKI is wrong")
        index += 1
    total = sum(cpu_times)
    return {
        "validations": len(cpu_times),
        "per_cpu_second": round(len(cpu_times) / total, 1) if total else None,
        "cpu": percentiles(cpu_times),
        "wall": percentiles(wall_times),
    }


def run(cas: int, leaves: int, seconds: float) -> dict[str, Any]:
    from idp.core.runtime import db
    from pki import validation
    from pki.container import Pki
    from pki.revocation import RevocationChecker
    from pki.truststore import TrustStore, _PathCache
    from pki.validation import ValidationOptions

    options = ValidationOptions(anchors=(), revocation=None)
    with tempfile.TemporaryDirectory() as directory, crl_server() as base_url:
        app, made = build_platform(Path(directory), cas, leaves, base_url)
        with app.app_context():
            pki = Pki.of()
            warm_store = pki.trust

            def warm(leaf: bytes) -> bool:
                return warm_store.validate(db(), leaf, options).valid

            for leaf in made[: min(len(made), cas * 2)]:
                warm(leaf)  # fill the CRL indexes and the snapshot

            def forget_paths() -> None:
                warm_store._paths = _PathCache()

            new_result = measure(warm, made, seconds, forget_paths)
            repeated = made[:200]
            for leaf in repeated:
                warm(leaf)
            seen_result = measure(warm, repeated, seconds, lambda: None)
            cold_state: dict[str, TrustStore] = {}

            def reset() -> None:
                validation._decoded_certificate.cache_clear()
                validation._rfc4514_of.cache_clear()
                cold_state["store"] = TrustStore(RevocationChecker())

            def cold(leaf: bytes) -> bool:
                return cold_state["store"].validate(db(), leaf, options).valid

            cold_result = measure(cold, made, seconds, reset)
    return {"cas": cas, "new": new_result, "seen": seen_result, "cold": cold_result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cas", default="3,30,300", help="comma-separated CA counts")
    parser.add_argument("--leaves", type=int, default=1500, help="distinct leaf certificates")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case")
    args = parser.parse_args(argv)
    print(f"{'CAs':>5} {'phase':>5} {'per CPU-s':>10} {'cpu p50':>9} {'cpu p99':>9} {'n':>6}")
    for cas in (int(value) for value in args.cas.split(",")):
        result = run(cas, args.leaves, args.seconds)
        for phase in ("new", "seen", "cold"):
            figures = result[phase]
            print(
                f"{cas:>5} {phase:>5} {figures['per_cpu_second']:>10} "
                f"{figures['cpu']['p50_ms']:>7}ms {figures['cpu']['p99_ms']:>7}ms "
                f"{figures['validations']:>6}",
                flush=True,
            )


if __name__ == "__main__":
    main()
