"""The password and the one-time code as sign-in methods (``idp.core.signin``).

``PasswordCheck`` and ``OtpCheck`` are the services (no Flask): throttling, the checks
themselves and their audit events. Unknown usernames, disabled accounts and wrong
passwords give the same error after the same work (an Argon2 verification against a
dummy hash), so responses do not reveal which accounts exist.

``PasswordMethod`` (a first factor, ``pwd``) and ``TotpMethod`` (a second factor,
``otp``, for accounts with an authenticator app; a recovery code counts as one) adapt
them to the interface the sign-in flow drives; ``accounts.init_app`` registers them.
A browser that completed a sign-in with the password gets a device cookie that exempts
it from the account's back-off (docs/decisions/0005).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy.orm import Session

from accounts.container import Accounts
from accounts.credentials.errors import InvalidCredentials, InvalidOtp
from accounts.credentials.passwords import PasswordHasher
from accounts.credentials.totp import TotpService
from accounts.errors import N_
from accounts.people.models import User, UserStatus
from accounts.people.services import AccountService, username_key
from idp.core.audit.services import DENIED, FAILURE, AuditLog
from idp.core.runtime import audit_log, db
from idp.core.signin import (
    Cookie,
    CountAttempt,
    Proof,
    SignInFailed,
    SignInMethod,
    SignInRequest,
    Stage,
)
from idp.core.throttle import Attempt, Throttle, Throttled

PASSWORD = "password"
TOTP = "totp"
DEVICE_COOKIE = "idp_device"
DEVICE_COOKIE_DAYS = 180
_ACCOUNT_KEY = "account_key"


@dataclass(frozen=True)
class PasswordResult:
    user: User
    account_key: str  # the throttle's key of the username (existing or not)
    device_id: str | None  # the known device the device cookie names, if genuine


def _check_throttle(
    throttle: Throttle,
    attempt: Attempt,
    *,
    step: str,
    subject: str,
    session: Session,
    audit: AuditLog,
    count: CountAttempt,
) -> None:
    try:
        throttle.check(attempt)
    except Throttled as exc:
        audit.record(
            "signin.throttled",
            DENIED,
            subject=subject,
            details={"step": step, "scope": exc.scope, "retry_after": exc.retry_after},
        )
        session.commit()
        count(step, "throttled")
        raise


class PasswordCheck:
    def __init__(
        self,
        session: Session,
        accounts: AccountService,
        hasher: PasswordHasher,
        throttle: Throttle,
        audit: AuditLog,
        count: CountAttempt,
    ) -> None:
        self._session = session
        self._accounts = accounts
        self._hasher = hasher
        self._throttle = throttle
        self._audit = audit
        self._count = count

    def check(
        self, username: str, password: str, *, client_ip: str, device_cookie: str | None
    ) -> PasswordResult:
        throttle = self._throttle
        key = throttle.account_key(username_key(username))
        attempt = Attempt(key, client_ip, throttle.device_for(device_cookie, key))
        unknown = f"account-key:{key[:16]}"
        _check_throttle(
            throttle,
            attempt,
            step="password",
            subject=unknown,
            session=self._session,
            audit=self._audit,
            count=self._count,
        )
        user = self._accounts.find_by_username(username)
        if user is None or user.password_hash is None:
            self._hasher.burn(password)
            self._fail(attempt, unknown, "unknown_user")
        if not self._hasher.verify(user.password_hash, password):
            self._fail(attempt, user.subject, "bad_password")
        if user.status is not UserStatus.ACTIVE:
            self._fail(attempt, user.subject, "disabled")
        throttle.success(attempt)
        if self._hasher.needs_rehash(user.password_hash):
            user.password_hash = self._hasher.hash(password)
            self._audit.record("password.rehash", subject=user.subject)
            self._session.commit()
        # otherwise nothing was written: finishing the sign-in commits its event
        return PasswordResult(user, key, attempt.device_id)

    def _fail(self, attempt: Attempt, subject: str, reason: str) -> NoReturn:
        self._throttle.failure(attempt)
        self._audit.record("signin.password", FAILURE, subject=subject, details={"reason": reason})
        self._session.commit()
        self._count("password", "failure")
        raise InvalidCredentials()


class OtpCheck:
    def __init__(
        self,
        session: Session,
        totp: TotpService,
        throttle: Throttle,
        audit: AuditLog,
        count: CountAttempt,
    ) -> None:
        self._session = session
        self._totp = totp
        self._throttle = throttle
        self._audit = audit
        self._count = count

    def check(self, user: User, code: str, *, client_ip: str, device_id: str | None) -> None:
        """``device_id``: the known device the password step recognised, if any."""
        throttle = self._throttle
        attempt = Attempt(throttle.account_key(user.public_id), client_ip, device_id)
        _check_throttle(
            throttle,
            attempt,
            step="otp",
            subject=user.subject,
            session=self._session,
            audit=self._audit,
            count=self._count,
        )
        if not self._totp.verify(user, code):
            throttle.failure(attempt)
            self._audit.record("signin.otp", FAILURE, subject=user.subject)
            self._session.commit()
            self._count("otp", "failure")
            raise InvalidOtp()
        throttle.success(attempt)
        self._session.commit()


def _throttle(accounts: Accounts, scope: str) -> Throttle:
    """Built for each attempt from the app's runtime (its store, clock, settings)."""
    core = accounts.core
    return Throttle(core.store, core.clock, core.settings, core.keys.secrets, scope=scope)


class PasswordMethod:
    """The username and password form of ``/login`` (fields ``username``, ``password``)."""

    name = PASSWORD
    stage = Stage.FIRST
    amr = frozenset({"pwd"})
    label = N_("Password")

    def __init__(self, accounts: Accounts, count: CountAttempt) -> None:
        self._accounts = accounts
        self._count = count

    def entry(self, next_url: str) -> str | None:  # noqa: ARG002 - the interface's signature
        return None  # the sign-in page's own form

    def applies(self, first: Proof) -> bool:  # noqa: ARG002 - the interface's signature
        return True

    def verify(self, fields: Mapping[str, str], request: SignInRequest) -> Proof:
        check = PasswordCheck(
            db(),
            self._accounts.account_service(),
            self._accounts.hasher,
            _throttle(self._accounts, "pwd"),
            audit_log(),
            self._count,
        )
        try:
            result = check.check(
                fields.get("username", ""),
                fields.get("password", ""),
                client_ip=request.client_ip,
                device_cookie=request.cookies.get(DEVICE_COOKIE),
            )
        except InvalidCredentials as exc:
            raise SignInFailed(exc.message) from None
        return Proof(
            method=PASSWORD,
            uid=result.user.id,
            sub=result.user.public_id,
            subject=result.user.subject,
            amr=("pwd",),
            device_id=result.device_id,
            state={_ACCOUNT_KEY: result.account_key},
        )

    def finished(self, proof: Proof) -> Sequence[Cookie]:
        """A browser without a (genuine) device cookie for the account gets one."""
        account_key = proof.state.get(_ACCOUNT_KEY)
        if proof.device_id is not None or account_key is None:
            return ()
        return (
            Cookie(
                DEVICE_COOKIE,
                _throttle(self._accounts, "pwd").issue_device_cookie(account_key),
                max_age=DEVICE_COOKIE_DAYS * 24 * 3600,
                path="/login",
                secure=self._accounts.core.settings.is_https,
            ),
        )


class TotpMethod:
    """A code from the authenticator app, or a recovery code (field ``otp``)."""

    name = TOTP
    stage = Stage.SECOND
    amr = frozenset({"otp"})
    label = N_("One-time code")

    def __init__(self, accounts: Accounts, count: CountAttempt) -> None:
        self._accounts = accounts
        self._count = count

    def entry(self, next_url: str) -> str | None:  # noqa: ARG002 - the interface's signature
        return None  # the sign-in pages' code form

    def applies(self, first: Proof) -> bool:
        user = self._accounts.account_service().get(first.uid)
        return user is not None and user.has_totp

    def verify(self, fields: Mapping[str, str], request: SignInRequest) -> Proof:
        first = request.first
        user = None if first is None else self._accounts.account_service().get(first.uid)
        if first is None or user is None:
            raise SignInFailed(InvalidOtp.default_message)
        check = OtpCheck(
            db(),
            self._accounts.totp_service(),
            _throttle(self._accounts, "otp"),
            audit_log(),
            self._count,
        )
        try:
            check.check(
                user, fields.get("otp", ""), client_ip=request.client_ip, device_id=first.device_id
            )
        except InvalidOtp as exc:
            raise SignInFailed(exc.message) from None
        return Proof(
            method=TOTP, uid=user.id, sub=user.public_id, subject=user.subject, amr=("otp",)
        )

    def finished(self, proof: Proof) -> Sequence[Cookie]:  # noqa: ARG002 - the interface's signature
        return ()


def methods(accounts: Accounts, count: CountAttempt) -> list[SignInMethod]:
    """This package's sign-in methods, in the order the flow should try them;
    ``count`` counts attempts' outcomes (the flow's)."""
    return [PasswordMethod(accounts, count), TotpMethod(accounts, count)]
