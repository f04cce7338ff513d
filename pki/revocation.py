"""Revocation checks for the platform trust store: is this certificate, issued by this
(already validated) CA, revoked? By OCSP and CRLs fetched over HTTP, with caches, so
that a warm sign-in does no network round trip and no CRL parsing.

``pki.truststore`` validates a path with pyhanko and revocation off, then calls
``RevocationChecker.check`` for every certificate below the cross-certificate (the
local CA's intermediates and the leaf) with its issuer, and ``decide`` turns the
status into a verdict by the CA's mode. Decision 31 (docs/decisions/0031-revocation.md)
explains the choices:

* Order: OCSP first when a URL is known (configured, else the certificate's AIA),
  then CRLs: those given (``idp pki verify --crl``), then the configured URLs, then
  the certificate's CRL distribution points if the configured ones gave no answer.
  The first conclusive answer (good or revoked) ends the check; ``unknown`` from a
  responder is a failure, not an answer.
* ``check`` never raises for network or parse problems: each becomes one line in
  ``failures`` ("OCSP http://...: ...", "CRL http://...: ..."), which the modes read.
* CRL cache: per (URL, issuer certificate), the ``CrlIndex`` (``pki.crl_index``:
  compact, constant-time look-up) is kept until its nextUpdate; at most
  ``max_cached_crls`` of them (the one expiring first goes). One lock per URL, so
  concurrent first requests fetch once. A failed fetch is remembered for
  ``failure_backoff`` (an hour when the URL serves another CA's CRL), so a CA whose
  server is down does not make every sign-in wait for a timeout. A background
  thread (``start``/``stop``) fetches each cached CRL again ``refresh_margin``
  before its nextUpdate, so requests do not wait; a failed refresh keeps the old
  index until it is stale.
* OCSP cache: per (issuer key hash, serial), until the response's nextUpdate but at
  most ``OCSP_MAX_CACHE`` (an hour); a response without nextUpdate is not cached. A
  bounded LRU (``ocsp_cache_size`` entries).

Times come from the injected clock (``idp.core.clock``), so tests move time forward.

Only call ``check`` for a certificate whose path has validated: the URLs it fetches
come from the certificate (distribution points, AIA), so they must be a trusted CA's.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final, Literal

from asn1crypto import x509

from idp.core.clock import Clock, SystemClock
from pki.crl_index import MAX_CRL_BYTES, CrlError, CrlIndex
from pki.ocsp_client import Fetch, FetchError, OcspAnswer, OcspError, http_fetch, query
from pki.reasons import no_revocation_info, revocation_unknown, revoked

logger = logging.getLogger(__name__)

OCSP_MAX_CACHE: Final = timedelta(hours=1)
CRL_MAX_CACHE_WITHOUT_NEXT_UPDATE: Final = timedelta(hours=1)
SKEW: Final = timedelta(minutes=5)  # as pki.crl_index and pki.ocsp_client allow
ISSUER_BACKOFF: Final = timedelta(hours=1)  # a URL that serves another CA's CRL
MAX_URLS: Final = 4  # distribution points or AIA URLs tried per certificate
MODES: Final = ("off", "soft", "hard", "require")

State = Literal["good", "revoked", "unknown"]


@dataclass(frozen=True)
class RevocationStatus:
    state: State
    source: str  # "CRL <url>", "OCSP <url>", "CRL (given)", or "" when unknown
    revoked_at: datetime | None = None
    reason: str | None = None  # RFC 5280's name when revoked
    failures: tuple[str, ...] = ()  # why a CRL or OCSP source could not be used


@dataclass
class _CachedCrl:
    url: str
    issuer_der: bytes
    index: CrlIndex
    expires: datetime  # nextUpdate (or fetched + an hour without one)
    next_attempt: datetime  # when the background thread may fetch it again


@dataclass(frozen=True)
class _CachedOcsp:
    answer: OcspAnswer
    source: str
    expires: datetime


class RevocationChecker:
    """OCSP and CRL checks with caches; one per process, shared by threads."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        fetch: Fetch | None = None,
        timeout: float = 5.0,
        max_crl_bytes: int = MAX_CRL_BYTES,
        ocsp_cache_size: int = 10000,
        refresh_margin: timedelta = timedelta(minutes=10),
        refresh_interval: float = 30.0,
        failure_backoff: timedelta = timedelta(seconds=30),
        max_cached_crls: int = 256,
    ) -> None:
        self.clock = clock or SystemClock()
        self.timeout = timeout
        self.max_crl_bytes = max_crl_bytes
        self._fetch = fetch
        self.ocsp_cache_size = ocsp_cache_size
        self.refresh_margin = refresh_margin
        self.refresh_interval = refresh_interval
        self.failure_backoff = failure_backoff
        self.max_cached_crls = max_cached_crls
        self._crls: dict[tuple[str, bytes], _CachedCrl] = {}
        self._crl_failures: dict[tuple[str, bytes], tuple[datetime, str]] = {}
        self._url_locks: dict[tuple[str, bytes], threading.Lock] = {}
        self._ocsp: OrderedDict[tuple[bytes, int], _CachedOcsp] = OrderedDict()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- Checking ----------------------------------------------------------------------

    def check(
        self,
        certificate_der: bytes,
        issuer_der: bytes,
        *,
        crl_urls: Sequence[str] = (),
        ocsp_url: str | None = None,
        crls: Sequence[bytes] = (),
        at: datetime | None = None,
    ) -> RevocationStatus:
        """The revocation status of ``certificate_der``, issued by ``issuer_der``."""
        moment = at or self.clock.now()
        if moment.utcoffset() is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            facts = _facts(bytes(certificate_der))
            issuer_key, fingerprint = _issuer_facts(bytes(issuer_der))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            unreadable = f"the certificate or its issuer cannot be read: {exc}"
            return RevocationStatus("unknown", "", failures=(unreadable,))
        serial, declared_crls, is_ca = facts.serial, facts.crl_urls, facts.is_ca
        failures: list[str] = []

        urls = [ocsp_url] if ocsp_url else list(facts.ocsp_urls[:1])
        for url in urls:
            status = self._by_ocsp(
                certificate_der, issuer_der, url, (issuer_key, serial), moment, failures
            )
            if status is not None:
                return status

        for number, der in enumerate(crls, 1):
            try:
                index = CrlIndex.from_der(der, issuer_der, at=moment, max_bytes=self.max_crl_bytes)
            except CrlError as exc:
                if exc.kind != "issuer":  # another CA's CRL: not for this certificate
                    failures.append(f"CRL {number} (given): {exc.reason}")
                continue
            status = self._by_crl(index, serial, is_ca, declared_crls, "CRL (given)", failures)
            if status is not None:
                return status

        # The configured URLs first; the certificate's own distribution points after
        # them when they gave no answer (a CA's configured CRL is often its root's,
        # while a certificate below an intermediate names the intermediate's).
        configured = list(dict.fromkeys(crl_urls))[:MAX_URLS]
        declared = [url for url in declared_crls if url not in configured][:MAX_URLS]
        for url in configured + declared:
            cached = self._crl(url, issuer_der, fingerprint, moment, failures)
            if cached is None:
                continue
            status = self._by_crl(cached, serial, is_ca, declared_crls, f"CRL {url}", failures)
            if status is not None:
                return status
        return RevocationStatus("unknown", "", failures=tuple(dict.fromkeys(failures)))

    def _by_ocsp(
        self,
        certificate_der: bytes,
        issuer_der: bytes,
        url: str,
        key: tuple[bytes, int],
        moment: datetime,
        failures: list[str],
    ) -> RevocationStatus | None:
        with self._lock:
            cached = self._ocsp.get(key)
            if cached is not None:
                self._ocsp.move_to_end(key)
        if cached is not None and cached.answer.this_update - SKEW <= moment <= cached.expires:
            answer, source = cached.answer, cached.source
        else:
            try:
                answer = query(
                    certificate_der,
                    issuer_der,
                    url,
                    at=moment,
                    timeout=self.timeout,
                    fetch=self._fetch,
                )
            except OcspError as exc:
                failures.append(f"OCSP {url}: {exc.reason}")
                return None
            except Exception as exc:  # noqa: BLE001 -- an injected fetch may raise anything
                failures.append(f"OCSP {url}: {type(exc).__name__}: {exc}")
                return None
            source = f"OCSP {url}"
            self._remember_ocsp(key, answer, source)
        if answer.status == "unknown":
            failures.append(f"OCSP {url}: the responder does not know the certificate")
            return None
        return RevocationStatus(
            answer.status, source, answer.revoked_at, answer.reason, tuple(failures)
        )

    def _remember_ocsp(self, key: tuple[bytes, int], answer: OcspAnswer, source: str) -> None:
        if answer.next_update is None or self.ocsp_cache_size <= 0:
            return
        expires = min(answer.next_update, self.clock.now() + OCSP_MAX_CACHE)
        with self._lock:
            self._ocsp[key] = _CachedOcsp(answer, source, expires)
            self._ocsp.move_to_end(key)
            while len(self._ocsp) > self.ocsp_cache_size:
                self._ocsp.popitem(last=False)

    @staticmethod
    def _by_crl(
        index: CrlIndex,
        serial: int,
        is_ca: bool,
        declared: Sequence[str],
        source: str,
        failures: list[str],
    ) -> RevocationStatus | None:
        """The status by one checked CRL, if the CRL covers the certificate: its
        issuingDistributionPoint may limit it to CA or end-entity certificates, or to
        the certificates that name one of its URIs (a CRL partitioned by distribution
        point must not clear a certificate of another partition). A certificate that
        names no distribution point is covered by any of the CA's CRLs."""
        if (index.scope == "ca" and not is_ca) or (index.scope == "end-entity" and is_ca):
            covered = "CA" if index.scope == "ca" else "end-entity"
            failures.append(f"{source}: the CRL covers {covered} certificates only")
            return None
        points = set(index.distribution_points)
        if points and declared and not points & set(declared):
            failures.append(
                f"{source}: the CRL covers another distribution point "
                f"({', '.join(index.distribution_points)})"
            )
            return None
        revocation = index.lookup(serial)
        if revocation is None:
            return RevocationStatus("good", source, failures=tuple(failures))
        return RevocationStatus(
            "revoked", source, revocation.revoked_at, revocation.reason, tuple(failures)
        )

    # --- CRL cache ---------------------------------------------------------------------

    def _crl(
        self,
        url: str,
        issuer_der: bytes,
        fingerprint: bytes,
        moment: datetime,
        failures: list[str],
    ) -> CrlIndex | None:
        key = (url, fingerprint)
        cached = self._usable(key, moment)
        if cached is not None:
            return cached
        with self._lock:
            lock = self._url_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._usable(key, moment)  # another thread may have fetched it
            if cached is not None:
                return cached
            with self._lock:
                failed = self._crl_failures.get(key)
            now = self.clock.now()
            if failed is not None and now < failed[0]:
                failures.append(f"CRL {url}: {failed[1]}")
                return None
            try:
                index = self._fetch_crl(url, issuer_der, moment)
            except CrlError as exc:
                reason = exc.reason
                # Another CA's CRL will not become this CA's: do not fetch it again soon.
                backoff = ISSUER_BACKOFF if exc.kind == "issuer" else self.failure_backoff
                with self._lock:
                    if len(self._crl_failures) >= self.max_cached_crls:
                        self._crl_failures = {
                            k: v for k, v in self._crl_failures.items() if v[0] > now
                        }
                    self._crl_failures[key] = (now + backoff, reason)
                failures.append(f"CRL {url}: {reason}")
                return None
            self._store(key, url, issuer_der, index)
            return index

    def _usable(self, key: tuple[str, bytes], moment: datetime) -> CrlIndex | None:
        with self._lock:
            cached = self._crls.get(key)
        if cached is None:
            return None
        index = cached.index
        if index.this_update - SKEW <= moment <= cached.expires:
            return index
        return None

    def _fetch_crl(self, url: str, issuer_der: bytes, moment: datetime) -> CrlIndex:
        """Fetch and check one CRL; every problem is a ``CrlError``."""
        try:
            if self._fetch is not None:
                raw = self._fetch(url, None, None)
            else:
                raw = http_fetch(
                    url, None, None, timeout=self.timeout, max_bytes=self.max_crl_bytes
                )
        except FetchError as exc:
            raise CrlError(exc.reason) from None
        except Exception as exc:  # noqa: BLE001 -- an injected fetch may raise anything
            raise CrlError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
        return CrlIndex.from_der(raw, issuer_der, at=moment, max_bytes=self.max_crl_bytes)

    def _store(self, key: tuple[str, bytes], url: str, issuer_der: bytes, index: CrlIndex) -> None:
        now = self.clock.now()
        expires = index.next_update or now + CRL_MAX_CACHE_WITHOUT_NEXT_UPDATE
        with self._lock:
            old = self._crls.get(key)
            if old is not None and old.index.this_update > index.this_update:
                return  # never go back to an older CRL
            self._crls[key] = _CachedCrl(url, issuer_der, index, expires, now)
            self._crl_failures.pop(key, None)
            while len(self._crls) > self.max_cached_crls:
                # The URLs come from validated certificates, but a CA could name many:
                # drop the CRL that expires first.
                oldest = min(self._crls, key=lambda k: self._crls[k].expires)
                del self._crls[oldest]
                self._url_locks.pop(oldest, None)

    # --- Background refresh ------------------------------------------------------------

    def start(self) -> None:
        """Start the refresh thread (daemon; a second call does nothing)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="crl-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the refresh thread and wait for it (idempotent)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.timeout + 5)
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.refresh_due()
            except Exception:  # the thread must survive anything
                logger.exception("refreshing CRLs failed")
            self._stopping.wait(self.refresh_interval)

    def refresh_due(self) -> int:
        """Fetch again every cached CRL within ``refresh_margin`` of its nextUpdate;
        the number of CRLs replaced. The refresh thread calls this periodically."""
        now = self.clock.now()
        with self._lock:
            due = [
                (key, entry)
                for key, entry in self._crls.items()
                if entry.expires - self.refresh_margin <= now and entry.next_attempt <= now
            ]
        replaced = 0
        for key, entry in due:
            with self._lock:
                lock = self._url_locks.setdefault(key, threading.Lock())
            with lock:
                try:
                    index = self._fetch_crl(entry.url, entry.issuer_der, now)
                except CrlError as exc:
                    logger.warning("refreshing the CRL %s failed: %s", entry.url, exc.reason)
                    with self._lock:
                        entry.next_attempt = now + self.failure_backoff
                    continue
                if index.this_update <= entry.index.this_update:
                    # Not newer (the CA has not published yet): try again a little later.
                    with self._lock:
                        entry.next_attempt = now + self.failure_backoff
                    continue
                self._store(key, entry.url, entry.issuer_der, index)
                replaced += 1
        return replaced

    # --- Verdicts ----------------------------------------------------------------------

    @staticmethod
    def decide(status: RevocationStatus, mode: str, who: str) -> str | None:
        """None when ``mode`` accepts ``status`` for ``who`` (e.g. "the certificate"),
        else the reason, worded as ``pki.validation`` words it."""
        if mode not in MODES:
            raise ValueError(f"unknown revocation mode {mode!r}: one of {', '.join(MODES)}")
        if mode == "off":
            return None
        if status.state == "revoked":
            when = status.revoked_at or datetime.min.replace(tzinfo=UTC)
            by = "OCSP" if status.source.startswith("OCSP") else "CRL"
            return revoked(who, when, status.reason or "unspecified", by)
        if status.state == "good" or mode == "soft":
            return None
        detail = f": {'; '.join(status.failures)}" if status.failures else ""
        if mode == "require":
            return no_revocation_info(who, detail)
        if status.failures:
            return revocation_unknown(who, detail)
        return None


@dataclass(frozen=True)
class _Facts:
    serial: int
    crl_urls: tuple[str, ...]  # http(s) and other URIs of its CRL distribution points
    ocsp_urls: tuple[str, ...]
    is_ca: bool


@lru_cache(maxsize=4096)
def _facts(certificate_der: bytes) -> _Facts:
    """What a check needs from a certificate, kept for the same bytes: the same
    certificates come back at every sign-in, and asn1crypto parsing is most of a
    warm check's cost."""
    certificate = x509.Certificate.load(certificate_der, strict=True)
    return _Facts(
        serial=int(certificate.serial_number),
        crl_urls=tuple(_distribution_points(certificate)),
        ocsp_urls=tuple(str(url) for url in certificate.ocsp_urls),
        is_ca=bool(certificate.ca),
    )


@lru_cache(maxsize=1024)
def _issuer_facts(issuer_der: bytes) -> tuple[bytes, bytes]:
    """(SHA-1 of the CA's public key bits, the OCSP cache key; SHA-256 of the CA
    certificate, the CRL cache key)."""
    issuer = x509.Certificate.load(issuer_der, strict=True)
    bits = issuer["tbs_certificate"]["subject_public_key_info"]["public_key"].contents[1:]
    return (
        hashlib.sha1(bits, usedforsecurity=False).digest(),
        hashlib.sha256(issuer_der).digest(),
    )


def _distribution_points(certificate: x509.Certificate) -> list[str]:
    urls: list[str] = []
    for point in certificate.crl_distribution_points:
        name = point["distribution_point"]
        if name.name != "full_name" or point["crl_issuer"].native:
            continue  # relative names and indirect CRLs: not fetched
        urls.extend(
            str(general.native)
            for general in name.chosen
            if general.name == "uniform_resource_identifier"
        )
    return urls


__all__ = ["MODES", "RevocationChecker", "RevocationStatus"]
