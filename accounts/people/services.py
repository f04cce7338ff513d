"""Account lifecycle: registration, look-up, password changes."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.credentials.errors import InvalidCredentials, WeakPassword
from accounts.credentials.passwords import PasswordHasher, check_password_rules
from accounts.errors import N_
from accounts.identifiers import check_mobile
from accounts.people.errors import InvalidPhone, InvalidProfile, InvalidUsername, UsernameTaken
from accounts.people.models import User, UserStatus
from accounts.realname.models import Verification, VerificationMethod
from accounts.signals import account_disabled, grants_withdrawn
from idp.core.audit.services import AuditLog
from idp.core.clock import Clock
from idp.core.keys import DataCipher

USERNAME_MIN = 3
USERNAME_MAX = 32
_USERNAME = re.compile(r"^[^\W_](?:[\w.-]*[^\W_])?$")
PHONE_CONTEXT = "users.phone_encrypted"
PHONE_INDEX = "phone"


def phone_evidence(phone_index: str | None) -> str:
    """The evidence reference of a phone check: the number's keyed index."""
    return f"phone:{phone_index}"


def username_key(username: str) -> str:
    """What makes two usernames the same: NFKC normalisation and case folding."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def check_username(username: str) -> str:
    name = unicodedata.normalize("NFKC", username).strip()
    if not USERNAME_MIN <= len(name) <= USERNAME_MAX:
        raise InvalidUsername(
            N_("Use %(min)d to %(max)d characters."), min=USERNAME_MIN, max=USERNAME_MAX
        )
    if not _USERNAME.match(name):
        raise InvalidUsername(
            N_(
                "Use letters, digits, dots, hyphens and underscores, starting and ending "
                "with a letter or digit."
            )
        )
    if name.isdigit():
        raise InvalidUsername(
            N_("A username cannot be only digits (it could be mistaken for a phone or ID number).")
        )
    return name


@dataclass(frozen=True)
class UserColumns:
    """The account columns another package may filter and sort on through
    ``AccountService.search`` (a provisioning protocol's query language): the service
    builds the statement, the caller narrows it with these."""

    id: Any
    public_id: Any
    username_key: Any
    display_name: Any
    email: Any
    status: Any
    created_at: Any
    updated_at: Any


USER_COLUMNS = UserColumns(
    id=User.id,
    public_id=User.public_id,
    username_key=User.username_key,
    display_name=User.display_name,
    email=User.email,
    status=User.status,
    created_at=User.created_at,
    updated_at=User.updated_at,
)
# the statuses as ``USER_COLUMNS.status`` holds them and ``set_status`` takes them
ACTIVE_STATUS = UserStatus.ACTIVE
DISABLED_STATUS = UserStatus.DISABLED
DISPLAY_NAME_MAX = 64
EMAIL_MAX = 254


def normalise_mobile(raw: str) -> str:
    """A mainland mobile number as 11 digits; accepts spaces, hyphens, +86 and 0086."""
    result = check_mobile(raw)
    if not result.valid:
        raise InvalidPhone()
    return str(result.fields["number"])


def check_display_name(value: str | None) -> str | None:
    shown = unicodedata.normalize("NFKC", value or "").strip() or None
    if shown is not None and (
        len(shown) > DISPLAY_NAME_MAX or any(unicodedata.category(ch) == "Cc" for ch in shown)
    ):
        raise InvalidProfile(N_("Use at most %(max)d printable characters."), max=DISPLAY_NAME_MAX)
    return shown


def check_email(value: str | None) -> str | None:
    """An e-mail address as the profile keeps it (lower case); the format only."""
    address = (value or "").strip().lower() or None
    if address is not None:
        local, at, domain = address.rpartition("@")
        if (
            not at
            or not local
            or "." not in domain
            or len(address) > EMAIL_MAX
            or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in address)
        ):
            raise InvalidProfile(N_("Enter an e-mail address such as name@example.cn."))
    return address


class AccountService:
    def __init__(
        self,
        session: Session,
        hasher: PasswordHasher,
        cipher: DataCipher,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._session = session
        self._hasher = hasher
        self._cipher = cipher
        self._audit = audit
        self._clock = clock

    def register(self, username: str, password: str, *, phone: str | None = None) -> User:
        """Create an account; nothing is written unless every check passes."""
        name = check_username(username)
        check_password_rules(password, username=name)
        number = normalise_mobile(phone) if phone else None
        key = username_key(name)
        if self.find_by_username(name) is not None:
            raise UsernameTaken()
        now = self._clock.now()
        user = User(
            username=name,
            username_key=key,
            password_hash=self._hasher.hash(password),
            password_changed_at=now,
            created_at=now,
        )
        if number is not None:
            user.phone_encrypted = self._cipher.encrypt(number, context=PHONE_CONTEXT)
            user.phone_index = self._cipher.blind_index(number, purpose=PHONE_INDEX)
        self._session.add(user)
        self._flush_unique()
        self._audit.record(
            "account.register", subject=user.subject, details={"phone": number is not None}
        )
        self._session.commit()
        return user

    def provision(
        self,
        username: str,
        *,
        display_name: str | None,
        email: str | None,
        password: str | None,
        active: bool = True,
    ) -> User:
        """Create an account for a provisioning client (SCIM). Unlike ``register`` it
        does not commit: the caller adds its own records and commits them together, so
        no half-created account is left. Without a password the account cannot sign in
        with one (an upstream provider or a later password set does)."""
        name = check_username(username)
        if password is not None:
            check_password_rules(password, username=name)
        if self.find_by_username(name) is not None:
            raise UsernameTaken()
        now = self._clock.now()
        user = User(
            username=name,
            username_key=username_key(name),
            password_hash=self._hasher.hash(password) if password is not None else None,
            password_changed_at=now if password is not None else None,
            display_name=check_display_name(display_name),
            email=check_email(email),
            status=UserStatus.ACTIVE if active else UserStatus.DISABLED,
            created_at=now,
            updated_at=now,
        )
        self._session.add(user)
        self._flush_unique()
        self._audit.record("account.register", subject=user.subject, details={"provisioned": True})
        return user

    def update_provisioned(
        self,
        user: User,
        *,
        username: str,
        display_name: str | None,
        email: str | None,
        password: str | None,
    ) -> bool:
        """Apply a provisioning client's values (not committed, as ``provision``);
        returns whether anything changed. A new password signs the account out
        elsewhere, as a password change does."""
        name = check_username(username)
        changed = False
        if username_key(name) != user.username_key:
            if self.find_by_username(name) is not None:
                raise UsernameTaken()
            user.username, user.username_key = name, username_key(name)
            changed = True
        elif name != user.username:
            user.username = name
            changed = True
        shown, address = check_display_name(display_name), check_email(email)
        if (shown, address) != (user.display_name, user.email):
            user.display_name, user.email = shown, address
            changed = True
        if password is not None:
            check_password_rules(password, username=name)
            user.password_hash = self._hasher.hash(password)
            user.password_changed_at = user.sessions_valid_after = self._clock.now()
            changed = True
        if changed:
            user.updated_at = self._clock.now()
            self._flush_unique()
            self._audit.record(
                "account.profile",
                subject=user.subject,
                details={"provisioned": True, "password": password is not None},
            )
        return changed

    def _flush_unique(self) -> None:
        try:
            self._session.flush()
        except IntegrityError:
            # another request took the name between our check and our write
            self._session.rollback()
            raise UsernameTaken() from None

    def search(self, shape: Callable[[Select[User], UserColumns], Select[User]]) -> list[User]:
        """Accounts the caller's ``shape`` selects (it adds joins to its own tables,
        conditions, order and limits on ``USER_COLUMNS``)."""
        return list(self._session.scalars(shape(select(User), USER_COLUMNS)).all())

    def count(self, shape: Callable[[Select[User], UserColumns], Select[User]]) -> int:
        """How many accounts ``shape`` selects (its order and limits are dropped)."""
        statement = shape(select(User), USER_COLUMNS).order_by(None).limit(None).offset(None)
        total = self._session.scalar(select(func.count()).select_from(statement.subquery()))
        return int(total or 0)

    def register_without_password(self, username: str, *, via: str) -> User:
        """Create an account that signs in through another method only (an upstream
        provider, ``via`` its name for the audit log); it can set a password later."""
        name = check_username(username)
        if self.find_by_username(name) is not None:
            raise UsernameTaken()
        user = User(
            username=name,
            username_key=username_key(name),
            password_hash=None,
            created_at=self._clock.now(),
        )
        self._session.add(user)
        self._flush_unique()
        self._audit.record("account.register", subject=user.subject, details={"via": via})
        self._session.commit()
        return user

    def find_by_username(self, username: str) -> User | None:
        return self._session.scalar(select(User).where(User.username_key == username_key(username)))

    def find_by_public_id(self, public_id: str) -> User | None:
        return self._session.scalar(select(User).where(User.public_id == public_id))

    def get(self, user_id: int) -> User | None:
        return self._session.get(User, user_id)

    def list(self, *, limit: int = 1000, offset: int = 0) -> Sequence[User]:
        return self._session.scalars(
            select(User).order_by(User.id).limit(limit).offset(offset)
        ).all()

    def phone_of(self, user: User) -> str | None:
        if user.phone_encrypted is None:
            return None
        return self._cipher.decrypt(user.phone_encrypted, context=PHONE_CONTEXT)

    def standard_claims(self, user: User) -> dict[str, Any]:
        """The user's OpenID Connect standard claims that this service knows."""
        changed = user.updated_at or user.created_at
        claims: dict[str, Any] = {
            "preferred_username": user.username,
            "updated_at": int(changed.timestamp()),
        }
        if user.display_name:
            claims["name"] = claims["nickname"] = user.display_name
        if user.email:
            # not verified: the service sends no e-mail yet
            claims.update(email=user.email, email_verified=False)
        phone = self.phone_of(user)
        if phone:
            # possession is proved by a one-time code (real-name level 2), not at
            # registration
            claims.update(
                phone_number="+86" + phone, phone_number_verified=self._phone_proved(user)
            )
        return claims

    def _phone_proved(self, user: User) -> bool:
        """A code sent to the account's current number was entered (and that record was
        not ended by an administrator)."""
        return (
            self._session.scalar(
                select(Verification.id)
                .where(
                    Verification.user_id == user.id,
                    Verification.method == VerificationMethod.SMS,
                    Verification.ended_at.is_(None),
                    Verification.evidence_ref == phone_evidence(user.phone_index),
                )
                .limit(1)
            )
            is not None
        )

    def update_profile(self, user: User, *, display_name: str | None, email: str | None) -> None:
        user.display_name = (display_name or "").strip() or None
        user.email = (email or "").strip().lower() or None
        user.updated_at = self._clock.now()
        self._audit.record("account.profile", subject=user.subject)
        self._session.commit()

    def change_password(self, user: User, current: str, new: str) -> None:
        if user.password_hash is None or not self._hasher.verify(user.password_hash, current):
            self._audit.record("password.change", "failure", subject=user.subject)
            self._session.commit()
            raise InvalidCredentials(N_("Your current password is incorrect."))
        self.set_password(user, new, event="password.change")

    def set_password(self, user: User, new: str, *, event: str = "password.set") -> None:
        check_password_rules(new, username=user.username)
        user.password_hash = self._hasher.hash(new)
        user.password_changed_at = user.sessions_valid_after = self._clock.now()
        user.password_reset_required = False
        self._audit.record(event, subject=user.subject)
        self._session.commit()

    def confirm_password(self, user: User, password: str) -> bool:
        """Re-authentication before a sensitive change."""
        return user.password_hash is not None and self._hasher.verify(user.password_hash, password)

    def set_status(self, user: User, status: UserStatus) -> None:
        user.status = status
        self._audit.record("account.status", subject=user.subject, details={"status": status.value})
        self._session.commit()
        if status is UserStatus.DISABLED:
            account_disabled.send(user)

    def is_active(self, user_id: int) -> bool:
        """Cheaper than loading the account (the token endpoint asks this)."""
        status = self._session.scalar(select(User.status).where(User.id == user_id))
        return status is UserStatus.ACTIVE

    # -- the holder's own security actions (the personal page)

    def report_not_me(self, user: User, *, event: int) -> bool:
        """ "This wasn't me" about one of the account's events: the next sign-in must
        choose a new password (when the account has one; the caller ends the sessions)
        and the account's grants are withdrawn. Returns whether a new password is
        required."""
        user.password_reset_required = user.password_hash is not None
        self._audit.record(
            "account.not_me",
            subject=user.subject,
            details={"event": event, "new_password": user.password_reset_required},
        )
        self._session.commit()
        grants_withdrawn.send(user)
        return user.password_reset_required

    def reset_password(self, user: User, new: str) -> None:
        """The new password a report asked for, chosen before the next sign-in starts:
        it must differ from the one that may be known."""
        if user.password_hash is not None and self._hasher.verify(user.password_hash, new):
            raise WeakPassword(N_("Choose a password different from your previous one."))
        self.set_password(user, new, event="password.reset")

    def schedule_deletion(self, user: User, *, grace_days: int) -> None:
        """The holder asked for deletion: erased after the grace period (``purge``);
        the account's grants are withdrawn (the caller ends the sessions)."""
        user.deletion_due_at = self._clock.now() + timedelta(days=grace_days)
        self._audit.record(
            "account.delete_scheduled",
            subject=user.subject,
            details={"due": user.deletion_due_at.isoformat(timespec="seconds")},
        )
        self._session.commit()
        grants_withdrawn.send(user)

    def cancel_deletion(self, user: User) -> None:
        if user.deletion_due_at is None:
            return
        user.deletion_due_at = None
        self._audit.record("account.delete_cancelled", subject=user.subject)
        self._session.commit()

    def purge_deleted(self) -> int:
        """Erase the accounts whose deletion is due: the account row, and through the
        database's cascades everything held for it (credentials, identity documents,
        verifications, links, certificate bindings, consents, tokens, service records).
        The audit log stays: it names the account by its opaque public id only."""
        due = self._session.scalars(
            select(User).where(User.deletion_due_at <= self._clock.now()).order_by(User.id)
        ).all()
        for user in due:
            self._audit.record("account.purge", subject=user.subject)
            self._session.execute(delete(User).where(User.id == user.id))
            self._session.commit()
        return len(due)
