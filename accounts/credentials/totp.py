"""TOTP (RFC 6238) enrollment and verification, and single-use recovery codes.

* Seeds are 160-bit, stored AES-GCM encrypted, shown once as a QR code (SVG rendered
  on the server) and as text.
* A code is accepted for the current 30-second step and one step either side; each
  step is usable once: the newest accepted step is stored and moved forward with a
  conditional UPDATE, so two parallel uses of one code cannot both succeed.
* Recovery codes: ten 50-bit codes, shown once, stored as keyed hashes, used once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from accounts.credentials.errors import InvalidOtp, NoPendingEnrollment, TotpAlreadyEnrolled
from accounts.credentials.models import RecoveryCode, TotpCredential
from accounts.people.models import User
from idp.core.audit.services import AuditLog
from idp.core.clock import Clock
from idp.core.keys import DataCipher, Secrets

ISSUER_NAME = "Dongguan ID"
STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_SEED_CONTEXT = "totp_credentials.secret_encrypted"
_RECOVERY_PURPOSE = "recovery-code"


@dataclass(frozen=True)
class Enrollment:
    secret: str
    uri: str
    qr_svg: str

    @property
    def secret_grouped(self) -> str:
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


class TotpService:
    def __init__(
        self,
        session: Session,
        cipher: DataCipher,
        secrets_: Secrets,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._secrets = secrets_
        self._audit = audit
        self._clock = clock

    def _credential(self, user: User) -> TotpCredential | None:
        return self._session.scalar(select(TotpCredential).where(TotpCredential.user_id == user.id))

    def has_pending_enrollment(self, user: User) -> bool:
        credential = self._credential(user)
        return credential is not None and credential.confirmed_at is None

    # -- enrollment

    def begin_enrollment(self, user: User) -> Enrollment:
        """Create (or replace) an unconfirmed seed and return what to show."""
        if user.has_totp:
            raise TotpAlreadyEnrolled()
        secret = pyotp.random_base32(length=32)
        credential = self._credential(user) or TotpCredential(user_id=user.id, secret_encrypted="")
        credential.secret_encrypted = self._cipher.encrypt(secret, context=_SEED_CONTEXT)
        credential.confirmed_at = None
        credential.last_used_step = None
        credential.created_at = self._clock.now()
        self._session.add(credential)
        self._session.commit()
        return self.enrollment_for(user, secret)

    def pending_enrollment(self, user: User) -> Enrollment:
        credential = self._credential(user)
        if credential is None or credential.confirmed_at is not None:
            raise NoPendingEnrollment()
        secret = self._cipher.decrypt(credential.secret_encrypted, context=_SEED_CONTEXT)
        return self.enrollment_for(user, secret)

    def enrollment_for(self, user: User, secret: str) -> Enrollment:
        uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
            name=user.username, issuer_name=ISSUER_NAME
        )
        qr = segno.make(uri, error="m")
        svg = qr.svg_inline(scale=4, dark="#000", light="#fff", title="QR code")
        return Enrollment(secret=secret, uri=uri, qr_svg=svg)

    def confirm_enrollment(self, user: User, code: str) -> list[str]:
        """Check the first code; on success the seed is active and recovery codes issued."""
        credential = self._credential(user)
        if credential is None or credential.confirmed_at is not None:
            raise NoPendingEnrollment()
        if not self._accept(credential, code):
            self._audit.record("totp.enroll", "failure", subject=user.subject)
            self._session.commit()
            raise InvalidOtp()
        credential.confirmed_at = self._clock.now()
        user.totp_enabled = True
        codes = self._replace_recovery_codes(user)
        self._audit.record("totp.enroll", subject=user.subject)
        self._session.commit()
        return codes

    def disable(self, user: User) -> None:
        credential = self._credential(user)
        if credential is not None:
            self._session.delete(credential)
        user.totp_enabled = False
        self._session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        self._audit.record("totp.disable", subject=user.subject)
        self._session.commit()

    # -- verification

    def verify(self, user: User, code: str) -> bool:
        """A TOTP code or an unused recovery code; each is accepted once."""
        credential = self._credential(user)
        if credential is None or credential.confirmed_at is None:
            return False
        compact = "".join(code.split())
        if compact.isdigit() and len(compact) == 6:
            return self._accept(credential, compact)
        return self._use_recovery_code(user, compact)

    def _accept(self, credential: TotpCredential, code: str) -> bool:
        code = "".join(code.split())
        if not (code.isdigit() and len(code) == 6):
            return False
        secret = self._cipher.decrypt(credential.secret_encrypted, context=_SEED_CONTEXT)
        totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
        now_step = int(self._clock.now().timestamp()) // STEP_SECONDS
        matched = None
        for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
            candidate = totp.generate_otp(step)
            if hmac.compare_digest(candidate, code):
                matched = step
        if matched is None:
            return False
        # Single use: move the newest accepted step forward only if it is older.
        result = self._session.execute(
            update(TotpCredential)
            .where(TotpCredential.id == credential.id)
            .where(
                (TotpCredential.last_used_step.is_(None))
                | (TotpCredential.last_used_step < matched)
            )
            .values(last_used_step=matched)
            .execution_options(synchronize_session="fetch")
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    # -- recovery codes

    def regenerate_recovery_codes(self, user: User) -> list[str]:
        codes = self._replace_recovery_codes(user)
        self._audit.record("recovery_codes.regenerate", subject=user.subject)
        self._session.commit()
        return codes

    def remaining_recovery_codes(self, user: User) -> int:
        return len(
            self._session.scalars(
                select(RecoveryCode.id).where(
                    RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
                )
            ).all()
        )

    def _replace_recovery_codes(self, user: User) -> list[str]:
        self._session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        codes = [
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
            for _ in range(RECOVERY_CODE_COUNT)
        ]
        now = self._clock.now()
        for code in codes:
            self._session.add(
                RecoveryCode(user_id=user.id, code_hash=self._hash_code(code), created_at=now)
            )
        return [f"{code[:5]}-{code[5:]}" for code in codes]

    def _hash_code(self, code: str) -> str:
        return self._secrets.mac_hex(_RECOVERY_PURPOSE, code)

    def _use_recovery_code(self, user: User, code: str) -> bool:
        normalised = code.replace("-", "").lower()
        if len(normalised) != 10:
            return False
        digest = self._hash_code(normalised)
        result = self._session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == digest,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=self._clock.now())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self._audit.record("recovery_code.use", subject=user.subject)
        return True


def current_step(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS
