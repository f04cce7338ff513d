"""Throttling of guesses (NIST SP 800-63B 5.2.2; OWASP device cookies).

Counters live in the short-lived store so every worker and node counts together.

* Per account (keyed by a MAC of the username, whether or not the account exists, so
  throttling reveals nothing): after ``login_failures_before_backoff`` consecutive
  failures each further failure doubles a waiting time, from
  ``login_backoff_base_seconds`` up to ``login_backoff_max_seconds``. Never permanent:
  at most about 100 guesses a day reach an account.
* Per device: a browser that signed in to the account before carries a signed device
  cookie; it is exempt from the account's back-off (so an attacker cannot lock the
  owner out) but has its own counter, and loses the exemption after as many failures.
* Per client address: at most ``ip_max_failures`` failures per ``ip_window_seconds``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from config import Settings
from idp.core.clock import Clock
from idp.core.keys import Secrets
from idp.core.store import Store

_DEVICE_PURPOSE = "device-cookie"


class Throttled(Exception):
    def __init__(self, retry_after: int, scope: str) -> None:
        super().__init__(f"throttled ({scope}) for {retry_after}s")
        self.retry_after = max(1, retry_after)
        self.scope = scope


@dataclass(frozen=True)
class Attempt:
    """Who is guessing: the account key, the client address and the device (if any)."""

    account_key: str
    client_ip: str
    device_id: str | None = None


class Throttle:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        secrets_: Secrets,
        *,
        scope: str = "pwd",
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._secrets = secrets_
        self._scope = scope

    # -- keys

    def account_key(self, username_key: str) -> str:
        return self._secrets.mac_hex("throttle-account", username_key)[:32]

    def _k(self, kind: str, value: str) -> str:
        return f"thr:{self._scope}:{kind}:{value}"

    # -- device cookies

    def issue_device_cookie(self, account_key: str) -> str:
        device_id = secrets.token_urlsafe(16)
        return f"{device_id}.{account_key}.{self._device_mac(device_id, account_key)}"

    def device_for(self, cookie: str | None, account_key: str) -> str | None:
        """The device id if the cookie is genuine and was issued for this account."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or parts[1] != account_key:
            return None
        device_id, _, mac = parts
        if not hmac.compare_digest(mac, self._device_mac(device_id, account_key)):
            return None
        return device_id

    def _device_mac(self, device_id: str, account_key: str) -> str:
        return self._secrets.mac_hex(_DEVICE_PURPOSE, f"{device_id}.{account_key}")[:32]

    # -- the checks

    def check(self, attempt: Attempt) -> None:
        """Raise ``Throttled`` if this attempt must wait; does not count anything."""
        settings = self._settings
        ip_failures = self._count(self._k("ip", attempt.client_ip))
        if ip_failures >= settings.ip_max_failures:
            raise Throttled(self._remaining(self._k("ip", attempt.client_ip)), "address")
        if attempt.device_id is not None:
            device_failures = self._count(self._k("dev", attempt.device_id))
            if device_failures < settings.login_failures_before_backoff:
                return  # a known device is exempt from the account's back-off
            raise Throttled(self._remaining(self._k("dev", attempt.device_id)), "device")
        until = self._store.get(self._k("lock", attempt.account_key))
        if until is not None:
            wait = float(until) - self._clock.now().timestamp()
            if wait > 0:
                raise Throttled(int(wait + 0.999), "account")

    def failure(self, attempt: Attempt) -> None:
        settings = self._settings
        self._store.incr(self._k("ip", attempt.client_ip), settings.ip_window_seconds)
        if attempt.device_id is not None:
            self._store.incr(self._k("dev", attempt.device_id), settings.login_backoff_max_seconds)
            return
        failures = self._store.incr(
            self._k("fail", attempt.account_key), settings.login_failure_window_seconds
        )
        over = failures - settings.login_failures_before_backoff
        if over >= 0:
            delay = min(
                settings.login_backoff_base_seconds * 2 ** min(over, 30),
                settings.login_backoff_max_seconds,
            )
            until = self._clock.now().timestamp() + delay
            self._store.set(self._k("lock", attempt.account_key), repr(until).encode(), delay)

    def success(self, attempt: Attempt) -> None:
        keys = [self._k("fail", attempt.account_key), self._k("lock", attempt.account_key)]
        if attempt.device_id is not None:
            keys.append(self._k("dev", attempt.device_id))
        self._store.delete(*keys)

    def _count(self, key: str) -> int:
        raw = self._store.get(key)
        return int(raw) if raw is not None else 0

    def _remaining(self, key: str) -> int:
        ttl = self._store.ttl(key)
        return int(ttl + 0.999) if ttl else 1


class RateLimit:
    """A plain fixed-window limit (registrations per address, codes per phone...)."""

    def __init__(self, store: Store, name: str, *, limit: int, window_seconds: int) -> None:
        self._store = store
        self._name = name
        self._limit = limit
        self._window = window_seconds

    def hit(self, key: str) -> None:
        """Count one use; raise ``Throttled`` once the limit is exceeded."""
        full = f"rl:{self._name}:{key}"
        count = self._store.incr(full, self._window)
        if count > self._limit:
            ttl = self._store.ttl(full)
            raise Throttled(int(ttl + 0.999) if ttl else self._window, self._name)
