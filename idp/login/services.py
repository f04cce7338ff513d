"""Sign-in: password check, second factor, throttling, audit.

Unknown usernames, disabled accounts and wrong passwords give the same error after the
same work (an Argon2 verification against a dummy hash), so responses do not reveal
which accounts exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy.orm import Session

from accounts.credentials.errors import InvalidCredentials, InvalidOtp
from accounts.credentials.passwords import PasswordHasher
from accounts.credentials.totp import TotpService
from accounts.people.models import User, UserStatus
from accounts.people.services import AccountService, username_key
from idp.audit.services import DENIED, FAILURE, AuditLog
from idp.core.metrics import SIGNINS
from idp.core.throttle import Attempt, Throttle, Throttled


@dataclass(frozen=True)
class PasswordResult:
    user: User
    needs_otp: bool
    account_key: str
    device_id: str | None


class SignInService:
    def __init__(
        self,
        session: Session,
        accounts: AccountService,
        hasher: PasswordHasher,
        totp: TotpService,
        password_throttle: Throttle,
        otp_throttle: Throttle,
        audit: AuditLog,
    ) -> None:
        self._session = session
        self._accounts = accounts
        self._hasher = hasher
        self._totp = totp
        self._password_throttle = password_throttle
        self._otp_throttle = otp_throttle
        self._audit = audit

    def check_password(
        self, username: str, password: str, *, client_ip: str, device_cookie: str | None
    ) -> PasswordResult:
        throttle = self._password_throttle
        key = throttle.account_key(username_key(username))
        attempt = Attempt(key, client_ip, throttle.device_for(device_cookie, key))
        self._check_throttle(throttle, attempt, "password", f"account-key:{key[:16]}")
        user = self._accounts.find_by_username(username)
        if user is None or user.password_hash is None:
            self._hasher.burn(password)
            self._fail(attempt, f"account-key:{key[:16]}", "unknown_user")
        if not self._hasher.verify(user.password_hash, password):
            self._fail(attempt, user.subject, "bad_password")
        if user.status is not UserStatus.ACTIVE:
            self._fail(attempt, user.subject, "disabled")
        throttle.success(attempt)
        if self._hasher.needs_rehash(user.password_hash):
            user.password_hash = self._hasher.hash(password)
            self._audit.record("password.rehash", subject=user.subject)
            self._session.commit()
        # otherwise nothing was written: record_success() commits the sign-in's event
        return PasswordResult(user, user.has_totp, key, attempt.device_id)

    def _check_throttle(
        self, throttle: Throttle, attempt: Attempt, step: str, subject: str
    ) -> None:
        try:
            throttle.check(attempt)
        except Throttled as exc:
            self._audit.record(
                "signin.throttled",
                DENIED,
                subject=subject,
                details={"step": step, "scope": exc.scope, "retry_after": exc.retry_after},
            )
            self._session.commit()
            SIGNINS.labels(step, "throttled").inc()
            raise

    def _fail(self, attempt: Attempt, subject: str, reason: str) -> NoReturn:
        self._password_throttle.failure(attempt)
        self._audit.record("signin.password", FAILURE, subject=subject, details={"reason": reason})
        self._session.commit()
        SIGNINS.labels("password", "failure").inc()
        raise InvalidCredentials()

    def check_otp(self, user: User, code: str, *, client_ip: str, device_id: str | None) -> None:
        """``device_id``: the known device the password step recognised, if any."""
        throttle = self._otp_throttle
        key = throttle.account_key(user.public_id)
        attempt = Attempt(key, client_ip, device_id)
        self._check_throttle(throttle, attempt, "otp", user.subject)
        if not self._totp.verify(user, code):
            throttle.failure(attempt)
            self._audit.record("signin.otp", FAILURE, subject=user.subject)
            self._session.commit()
            SIGNINS.labels("otp", "failure").inc()
            raise InvalidOtp()
        throttle.success(attempt)
        self._session.commit()

    def record_success(self, user: User, amr: list[str]) -> None:
        self._audit.record("signin", subject=user.subject, details={"amr": amr})
        self._session.commit()
        SIGNINS.labels("complete", "success").inc()
