"""One small signed HTTP client for the remote services (registry, face check, SMS).

``SignedClient.post_json`` sends one JSON request and returns the parsed answer, or
raises ``RemoteUnavailable``. Around each call (decision 17):

- signing: with a shared key, each request carries ``X-IDP-Key-Id``,
  ``X-IDP-Timestamp``, ``X-IDP-Nonce``, ``X-IDP-Request-Id`` and ``X-IDP-Signature``,
  the hex HMAC-SHA-256 of ``signing_string`` (method, path, timestamp, nonce, request
  id and the SHA-256 of the body); the service refuses a wrong signature, a nonce it has
  seen and a timestamp more than ``MAX_SKEW_SECONDS`` away from its clock;
- mutual TLS when a client certificate is given, and a CA bundle for the server's;
- a timeout per attempt, and retries with exponential back-off and jitter for
  connection errors, timeouts and 5xx only; any other status (4xx, a redirect) means
  we are misconfigured, and asking again would not help;
- a ``CircuitBreaker`` per service: after N consecutive failed attempts, calls fail at
  once (no network) for a while, then one trial call closes or reopens it.

Messages and logs name the service, the status, the attempt count and the elapsed time
only: never a URL's query, a request or response body, so no document number, name,
phone number, image or message text.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from idp.core.clock import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")

SIGNATURE_SCHEME = "IDP-HMAC-SHA256"
MAX_SKEW_SECONDS = 300
MAX_RESPONSE_BYTES = 64 * 1024
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0

KEY_ID_HEADER = "X-IDP-Key-Id"
TIMESTAMP_HEADER = "X-IDP-Timestamp"
NONCE_HEADER = "X-IDP-Nonce"
REQUEST_ID_HEADER = "X-IDP-Request-Id"
SIGNATURE_HEADER = "X-IDP-Signature"


class RemoteUnavailable(Exception):
    """The remote service gave no usable answer; the message is for operators."""


class MalformedAnswer(ValueError):
    """Raised by a ``parse`` function: the answer is not what the contract says."""


def optional_text(answer: dict[str, Any], field: str, *, max_length: int = 200) -> str | None:
    """A field of an answer that is absent, null or a short non-empty string."""
    value = answer.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise MalformedAnswer(field)
    return value


# -- signing -----------------------------------------------------------------------------


def key_id(key: bytes) -> str:
    """A public name for a shared key, so a service holding an old and a new key during
    a change knows which to check with. It reveals nothing usable about the key."""
    return hashlib.sha256(b"idp-remote-key-id\x00" + key).hexdigest()[:16]


def signing_string(
    method: str, path: str, timestamp: str, nonce: str, request_id: str, body: bytes
) -> bytes:
    """What ``X-IDP-Signature`` is the HMAC of: the lines below joined by ``\\n``."""
    return "\n".join(
        (
            SIGNATURE_SCHEME,
            method.upper(),
            path,
            timestamp,
            nonce,
            request_id,
            hashlib.sha256(body).hexdigest(),
        )
    ).encode()


def sign(
    key: bytes, method: str, path: str, body: bytes, *, request_id: str, now: float
) -> dict[str, str]:
    timestamp = str(int(now))
    nonce = secrets.token_hex(16)
    mac = hmac.new(
        key, signing_string(method, path, timestamp, nonce, request_id, body), hashlib.sha256
    )
    return {
        KEY_ID_HEADER: key_id(key),
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: mac.hexdigest(),
    }


# -- circuit breaker ---------------------------------------------------------------------


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Counts consecutive failed attempts at one service. At ``failures`` it opens: no
    attempt is allowed for ``reset_seconds``. Then one trial attempt is let through
    (half-open; others still fail at once): its success closes the breaker, its failure
    opens it again. Thread-safe."""

    def __init__(self, name: str, clock: Clock, *, failures: int, reset_seconds: float) -> None:
        self.name = name
        self._clock = clock
        self._threshold = failures
        self._reset = timedelta(seconds=reset_seconds)
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: datetime | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def allow(self) -> bool:
        """May an attempt go out now? In half-open, only the first caller may."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN:
                return False  # a trial is under way
            assert self._opened_at is not None
            if self._clock.now() - self._opened_at < self._reset:
                return False
            self._state = BreakerState.HALF_OPEN
            return True

    def retry_in(self) -> float:
        """Seconds until a trial may go out (0 when it may now)."""
        with self._lock:
            if self._opened_at is None or self._state is not BreakerState.OPEN:
                return 0.0
            left = self._opened_at + self._reset - self._clock.now()
            return max(0.0, left.total_seconds())

    def succeeded(self) -> None:
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                log.warning("%s: circuit closed again", self.name)
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._opened_at = None

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            trial = self._state is BreakerState.HALF_OPEN
            if trial or self._failures >= self._threshold:
                if self._state is not BreakerState.OPEN:
                    log.error(
                        "%s: circuit open after %d consecutive failures; calls stop for %d s",
                        self.name,
                        self._failures,
                        self._reset.total_seconds(),
                    )
                self._state = BreakerState.OPEN
                self._opened_at = self._clock.now()


# -- the client --------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteService:
    """Where and how to reach one remote service."""

    name: str  # for messages and logs: "registry", "face", "sms"
    url: str  # base URL; paths are appended
    timeout_seconds: float
    retries: int
    hmac_key: bytes | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_file: Path | None = None


class _Failure(Exception):
    """One failed attempt: a short reason (no data), whether to try again."""

    def __init__(self, reason: str, *, retry: bool, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.status = status


class SignedClient:
    def __init__(
        self,
        service: RemoteService,
        breaker: CircuitBreaker,
        *,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base_seconds: float = BACKOFF_BASE_SECONDS,
    ) -> None:
        self.service = service
        self.breaker = breaker
        self._sleep = sleep
        self._backoff = backoff_base_seconds

    def post_json(self, path: str, payload: dict[str, Any], parse: Callable[[Any], T]) -> T:
        """POST ``payload`` to the service's URL + ``path``; ``parse`` turns the answer's
        JSON (``None`` for an empty body) into the result or raises ``MalformedAnswer``.
        Raises ``RemoteUnavailable``."""
        name = self.service.name
        url = self.service.url + path
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        request_id = secrets.token_hex(16)  # the same for every attempt of this call
        attempts = self.service.retries + 1
        started = time.monotonic()
        failure: _Failure | None = None
        made = 0
        for attempt in range(1, attempts + 1):
            if not self.breaker.allow():
                log.warning(
                    "%s: circuit open, call refused without trying (attempt %d/%d)",
                    name,
                    attempt,
                    attempts,
                )
                raise RemoteUnavailable(
                    self._message(
                        f"circuit open, next try in {self.breaker.retry_in():.0f} s", made, started
                    )
                )
            made = attempt
            succeeded = False
            try:
                result = parse(self._attempt(url, body, request_id))
                succeeded = True
            except _Failure as exc:
                failure = exc
            except MalformedAnswer:
                failure = _Failure("malformed answer", retry=False)
            finally:
                # anything unexpected counts as a failure too, so a half-open breaker
                # never waits for a trial that ended in an exception
                if succeeded:
                    self.breaker.succeeded()
                else:
                    self.breaker.failed()
            if succeeded:
                return result
            assert failure is not None
            log.warning(
                "%s: attempt %d/%d failed: %s (%.2f s)",
                name,
                attempt,
                attempts,
                failure.reason,
                time.monotonic() - started,
            )
            if not failure.retry:
                break
            if attempt < attempts:
                self._sleep(self._delay(attempt))
        assert failure is not None
        suffix = "" if failure.retry else ", not retried"
        raise RemoteUnavailable(self._message(failure.reason + suffix, made, started))

    # -- one attempt

    def _attempt(self, url: str, body: bytes, request_id: str) -> Any:
        service = self.service
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            REQUEST_ID_HEADER: request_id,
        }
        if service.hmac_key is not None:
            path = urlsplit(url).path or "/"
            headers |= sign(
                service.hmac_key, "POST", path, body, request_id=request_id, now=time.time()
            )
        cert = (
            (str(service.client_cert), str(service.client_key))
            if service.client_cert and service.client_key
            else None
        )
        # A session per call: calls are rare (one per verification or message), and
        # nothing is shared between threads or left open.
        with requests.Session() as session:
            session.trust_env = False  # no proxy, .netrc or CA bundle from the environment
            try:
                with session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=service.timeout_seconds,
                    cert=cert,
                    verify=str(service.ca_file) if service.ca_file else True,
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    return self._read(response)
            except requests.Timeout as exc:
                raise _Failure(f"timed out ({type(exc).__name__})", retry=True) from None
            except requests.ConnectionError as exc:
                raise _Failure(f"connection failed ({type(exc).__name__})", retry=True) from None
            except (requests.RequestException, OSError) as exc:
                # an unreadable certificate file, an invalid URL: configuration
                raise _Failure(f"request failed ({type(exc).__name__})", retry=False) from None

    def _read(self, response: requests.Response) -> Any:
        status = response.status_code
        if status >= 500:
            raise _Failure(f"HTTP {status}", retry=True, status=status)
        if status in (401, 403):
            raise _Failure(
                f"HTTP {status}: refused us (check the shared key and the client certificate)",
                retry=False,
                status=status,
            )
        if not 200 <= status < 300:
            raise _Failure(f"HTTP {status}", retry=False, status=status)
        content = bytearray()
        for chunk in response.iter_content(8192):
            content += chunk
            if len(content) > MAX_RESPONSE_BYTES:
                raise _Failure("answer too large", retry=False)
        if not content.strip():
            return None
        try:
            return json.loads(bytes(content))
        except ValueError:
            raise _Failure("answer is not JSON", retry=False) from None

    def _delay(self, attempt: int) -> float:
        """Exponential back-off with jitter: half fixed, half random."""
        ceiling = min(BACKOFF_CAP_SECONDS, self._backoff * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, no secret

    def _message(self, reason: str, attempts: int, started: float) -> str:
        elapsed = time.monotonic() - started
        plural = "" if attempts == 1 else "s"
        return f"{self.service.name}: {reason} ({attempts} attempt{plural}, {elapsed:.1f} s)"
