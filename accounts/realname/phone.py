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

from accounts.adapters.sms import SmsGateway, SmsUnavailable
from accounts.errors import N_, AccountError
from accounts.identifiers import mask
from accounts.people.models import User
from accounts.people.services import PHONE_CONTEXT, PHONE_INDEX, normalise_mobile, phone_evidence
from accounts.realname.models import Verification, VerificationMethod
from accounts.realname.services import DocumentClaim, RealNameService
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


class PhoneCheckService:
    def __init__(
        self,
        realname: RealNameService,
        cipher: DataCipher,
        secrets_: Secrets,
        store: Store,
        clock: Clock,
        gateway: SmsGateway,
        limits: PhoneCheckLimits,
    ) -> None:
        self._realname = realname
        self._cipher = cipher
        self._secrets = secrets_
        self._store = store
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
        claim = DocumentClaim.checked(name, number, confirmed=False)
        mobile = normalise_mobile(phone)
        # an account with a confirmed identity may declare only that identity
        self._realname.check_claim(user, claim)
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
            "number": self._cipher.encrypt(claim.number, context=PENDING_CONTEXT),
            "name": self._cipher.encrypt(claim.name, context=PENDING_CONTEXT),
            "kind": claim.kind,
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
        """Record the declared identity, the phone and level 2 (in one transaction:
        a refusal keeps neither). Whether the number is confirmed for another account is
        told only now that the code was proved, not to anyone who merely fills in the
        form."""
        claim = DocumentClaim(
            number=self._cipher.decrypt(str(entry["number"]), context=PENDING_CONTEXT),
            kind=str(entry["kind"]),
            name=self._cipher.decrypt(str(entry["name"]), context=PENDING_CONTEXT),
            confirmed=False,
        )
        user.phone_encrypted = self._cipher.encrypt(mobile, context=PHONE_CONTEXT)
        user.phone_index = self._cipher.blind_index(mobile, purpose=PHONE_INDEX)
        user.updated_at = now
        return self._realname.record_verification(
            user,
            method=VerificationMethod.SMS,
            level=2,
            source=self._gateway.source,
            # which number was proved (its keyed index): phone_number_verified holds
            # only while the account keeps this number
            evidence_ref=phone_evidence(user.phone_index),
            document=claim,
        )

    def _key(self, user: User) -> str:
        return f"realname:sms:{user.public_id}"

    def _code_mac(self, user: User, mobile: str, code: str) -> str:
        return self._secrets.mac_hex(CODE_PURPOSE, f"{user.public_id}\n{mobile}\n{code}")

    def _refuse(self, user: User, reason: str, **details: str) -> None:
        self._realname.record_refusal(user, method=VerificationMethod.SMS, reason=reason, **details)


def _digits(code: str) -> str:
    """The code as typed, without spaces; full-width digits count as digits."""
    return "".join(unicodedata.normalize("NFKC", code).split())[:32]
