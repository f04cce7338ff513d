"""Real-name level 2: a self-declared identity (format rules only) and possession of a
mainland mobile number, proved with a one-time code sent by SMS (design.md section 5;
docs/decisions/0018-level-2-and-4.md).

The code is six random digits. The store holds, per account, only a keyed hash of it
(bound to the account and the phone number), the declared number, name and phone
encrypted, an expiry and a count of wrong tries. Confirming takes the entry atomically
(``Store.take``), so a code is used at most once even under parallel submissions; a
wrong code puts the entry back with one more wrong try, and the fifth wrong try drops
it. Codes per phone number (keyed on a keyed hash of the number) and per account are
limited.

A self-declared number does not claim the unique "one person, one identity" index:
only a registry, counter or certificate confirmation does. An account whose identity is
already confirmed keeps it; it may re-confirm its phone with the same document only.
"""

from __future__ import annotations

import hmac
import json
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.adapters.registry import NUMBER_INDEX, normalise_name
from accounts.adapters.sms import SmsGateway, SmsUnavailable
from accounts.errors import N_, AccountError
from accounts.identifiers import mask
from accounts.people.models import User
from accounts.people.services import PHONE_CONTEXT, PHONE_INDEX, normalise_mobile, phone_evidence
from accounts.realname.errors import IdentityAlreadyVerified, IdentityTaken
from accounts.realname.models import Identity, Verification, VerificationMethod
from accounts.realname.services import (
    NAME_CONTEXT,
    NUMBER_CONTEXT,
    checked_document,
    checked_name,
    confirmed_holder,
)
from idp.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock
from idp.core.keys import DataCipher, Secrets
from idp.core.store import Store
from idp.core.throttle import RateLimit, Throttled

CODE_DIGITS = 6
MAX_WRONG_CODES = 5
PENDING_CONTEXT = "store.realname-sms"
CODE_PURPOSE = "realname-sms-code"
PHONE_LIMIT_PURPOSE = "realname-sms-phone"
# the message sent; ``%(code)s`` and ``%(minutes)d`` are filled in
DEFAULT_MESSAGE = N_(
    "Your real-name verification code is %(code)s. It is valid for %(minutes)d minutes. "
    "Do not tell it to anyone."
)


class SmsDown(AccountError):
    default_message = N_(
        "The text message could not be sent just now. Your level is unchanged; please try "
        "again later."
    )


class TooManyCodes(AccountError):
    default_message = N_(
        "Too many codes have been asked for this account or this mobile number. Try again later."
    )


class CodeExpired(AccountError):
    default_message = N_("The code has expired or has already been used. Ask for a new code.")


class WrongCode(AccountError):
    default_message = N_("That code is not right. Check the text message and try again.")


class TooManyWrongCodes(AccountError):
    default_message = N_("Too many wrong codes. Ask for a new code.")


class VerificationConflict(AccountError):
    default_message = N_("Your account changed while the code was checked. Please try again.")


@dataclass(frozen=True)
class PendingCode:
    """What the code page may show: the masked phone number and when the code expires."""

    masked_phone: str
    expires_at: datetime


@dataclass(frozen=True)
class PhoneCheckLimits:
    code_lifetime_seconds: int
    codes_per_phone_per_hour: int
    codes_per_account_per_day: int
    level_valid_days: int


class PhoneCheckService:
    def __init__(
        self,
        session: Session,
        cipher: DataCipher,
        secrets_: Secrets,
        store: Store,
        audit: AuditLog,
        clock: Clock,
        gateway: SmsGateway,
        limits: PhoneCheckLimits,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._secrets = secrets_
        self._store = store
        self._audit = audit
        self._clock = clock
        self._gateway = gateway
        self._limits = limits

    # -- step 1: declare and receive a code ----------------------------------------------

    def send_code(
        self, user: User, name: str, number: str, phone: str, *, message: str = DEFAULT_MESSAGE
    ) -> PendingCode:
        """Check the declared document, name and phone, and text a new code to the phone
        (replacing any pending one). ``message`` is the (translated) text with
        ``%(code)s`` and ``%(minutes)d``."""
        document, kind = checked_document(number)
        clean_name = checked_name(name)
        mobile = normalise_mobile(phone)
        self._check_not_switching(user, document, clean_name)
        try:
            RateLimit(
                self._store,
                "realname-sms-account",
                limit=self._limits.codes_per_account_per_day,
                window_seconds=24 * 3600,
            ).hit(user.public_id)
            # whichever account asks: keyed on a keyed hash of the number, never the number
            RateLimit(
                self._store,
                "realname-sms-phone",
                limit=self._limits.codes_per_phone_per_hour,
                window_seconds=3600,
            ).hit(self._secrets.mac_hex(PHONE_LIMIT_PURPOSE, mobile)[:32])
        except Throttled:
            raise TooManyCodes() from None
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        lifetime = self._limits.code_lifetime_seconds
        expires_at = self._clock.now() + timedelta(seconds=lifetime)
        pending = {
            "mac": self._code_mac(user, mobile, code),
            "phone": self._cipher.encrypt(mobile, context=PENDING_CONTEXT),
            "number": self._cipher.encrypt(document, context=PENDING_CONTEXT),
            "name": self._cipher.encrypt(clean_name, context=PENDING_CONTEXT),
            "kind": kind,
            "expires": expires_at.timestamp(),
            "wrong": 0,
        }
        # a new code replaces the pending one (before sending: the old code stops working
        # even when this message cannot be sent)
        self._store.delete(self._key(user))
        try:
            self._gateway.send(mobile, message % {"code": code, "minutes": lifetime // 60})
        except SmsUnavailable as exc:
            self._refuse(user, "sms_unavailable", error=str(exc)[:200])
            raise SmsDown() from None
        self._store.set(self._key(user), json.dumps(pending).encode(), lifetime)
        return PendingCode(masked_phone=mask(mobile), expires_at=expires_at)

    def pending(self, user: User) -> PendingCode | None:
        """The code waiting for this account, if any (for the code page)."""
        raw = self._store.get(self._key(user))
        if raw is None:
            return None
        entry = json.loads(raw)
        expires_at = datetime.fromtimestamp(float(entry["expires"]), tz=UTC)
        if expires_at <= self._clock.now():
            return None
        mobile = self._cipher.decrypt(entry["phone"], context=PENDING_CONTEXT)
        return PendingCode(masked_phone=mask(mobile), expires_at=expires_at)

    # -- step 2: prove the code ----------------------------------------------------------

    def confirm(self, user: User, code: str) -> Verification:
        """Accept the code once: record the self-declared identity (unless a confirmed
        one exists), the phone, and level 2. Refusals are audited without personal data."""
        key = self._key(user)
        raw = self._store.take(key)  # atomic: a parallel submission finds nothing
        if raw is None:
            raise CodeExpired()
        entry = json.loads(raw)
        now = self._clock.now()
        remaining = float(entry["expires"]) - now.timestamp()
        if remaining <= 0:
            raise CodeExpired()
        mobile = self._cipher.decrypt(entry["phone"], context=PENDING_CONTEXT)
        given = _digits(code)
        if not hmac.compare_digest(self._code_mac(user, mobile, given), str(entry["mac"])):
            entry["wrong"] = int(entry["wrong"]) + 1
            if entry["wrong"] >= MAX_WRONG_CODES:
                self._refuse(user, "too_many_wrong_codes")
                raise TooManyWrongCodes()
            # put it back unless a new code was asked for meanwhile
            self._store.add(key, json.dumps(entry).encode(), remaining)
            self._refuse(user, "wrong_code")
            raise WrongCode()
        return self._record(user, entry, mobile, now)

    # -- helpers -------------------------------------------------------------------------

    def _record(
        self, user: User, entry: dict[str, object], mobile: str, now: datetime
    ) -> Verification:
        document = self._cipher.decrypt(str(entry["number"]), context=PENDING_CONTEXT)
        clean_name = self._cipher.decrypt(str(entry["name"]), context=PENDING_CONTEXT)
        kind = str(entry["kind"])
        number_index = self._cipher.blind_index(document, purpose=NUMBER_INDEX)
        identity = self._identity(user)
        try:
            self._check_not_switching(user, document, clean_name, identity=identity)
        except IdentityAlreadyVerified:
            self._refuse(user, "identity_already_verified")
            raise
        # only now that the code was proved: whether a number is taken is not told to
        # anyone who merely fills in the form
        if confirmed_holder(self._session, number_index) not in (None, user.id):
            self._refuse(user, "identity_taken")
            raise IdentityTaken()
        if identity is None:
            identity = Identity(user_id=user.id, created_at=now)
            self._session.add(identity)
        if identity.verified_number_index is None:
            # self-declared: stored like a confirmed one, but it claims no unique index
            identity.document_kind = kind
            identity.number_encrypted = self._cipher.encrypt(document, context=NUMBER_CONTEXT)
            identity.number_index = number_index
            identity.name_encrypted = self._cipher.encrypt(clean_name, context=NAME_CONTEXT)
            identity.updated_at = now
        user.phone_encrypted = self._cipher.encrypt(mobile, context=PHONE_CONTEXT)
        user.phone_index = self._cipher.blind_index(mobile, purpose=PHONE_INDEX)
        user.updated_at = now
        verification = Verification(
            user_id=user.id,
            method=VerificationMethod.SMS,
            level=2,
            verified_at=now,
            expires_at=now + timedelta(days=self._limits.level_valid_days),
            source=self._gateway.source,
            # which number was proved (its keyed index): phone_number_verified holds
            # only while the account keeps this number
            evidence_ref=phone_evidence(user.phone_index),
        )
        self._session.add(verification)
        try:
            self._session.flush()
        except IntegrityError:
            # the account's identity was written by another request in between
            self._session.rollback()
            self._refuse(user, "conflict")
            raise VerificationConflict() from None
        self._audit.record(
            "realname.verify",
            subject=user.subject,
            details={"method": "sms", "level": 2, "document_kind": kind},
        )
        self._session.commit()
        return verification

    def _check_not_switching(
        self,
        user: User,
        document: str,
        clean_name: str,
        *,
        identity: Identity | None = None,
    ) -> None:
        """An account with a confirmed identity may declare only that identity."""
        identity = identity or self._identity(user)
        if identity is None or identity.verified_number_index is None:
            return
        number_index = self._cipher.blind_index(document, purpose=NUMBER_INDEX)
        same_number = hmac.compare_digest(identity.verified_number_index, number_index)
        stored_name = self._cipher.decrypt(identity.name_encrypted, context=NAME_CONTEXT)
        if not same_number or normalise_name(stored_name) != clean_name:
            raise IdentityAlreadyVerified()

    def _identity(self, user: User) -> Identity | None:
        return self._session.scalar(select(Identity).where(Identity.user_id == user.id))

    def _key(self, user: User) -> str:
        return f"realname:sms:{user.public_id}"

    def _code_mac(self, user: User, mobile: str, code: str) -> str:
        return self._secrets.mac_hex(CODE_PURPOSE, f"{user.public_id}\n{mobile}\n{code}")

    def _refuse(self, user: User, reason: str, **details: str) -> None:
        self._audit.record(
            "realname.verify",
            FAILURE,
            subject=user.subject,
            details={"method": "sms", "reason": reason, **details},
        )
        self._session.commit()


def _digits(code: str) -> str:
    """The code as typed, without spaces; full-width digits count as digits."""
    return "".join(unicodedata.normalize("NFKC", code).split())[:32]
