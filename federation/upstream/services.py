"""Upstream providers (added by the command line, or listed in the settings) and the
account mapping of a checked upstream sign-in.

Upstreams come from two places: ``[[upstream_providers]]`` in the settings and rows
added by ``idp federation add-upstream``. Names and issuers are unique across both (the
command refuses one the settings already use); the settings' entries cannot be removed
by the command. Discovery and the JWKS of a stored upstream are kept on its row and
refreshed when older than ``METADATA_MAX_AGE``; a settings entry's are kept by the
worker (``MetadataCache``).

The mapping rules (issue 13 part 2, decision 39), in this order:

1. a link on (issuer, subject): that account;
2. else, an identity claim whose number passes the identifier rules, asserted at
   ``link_min_level`` or more (after the level map): the account holding that confirmed
   identity (blind index) is linked;
3. else the person chooses: a new account at the mapped level (``record_verification``,
   method federation, the upstream as source, never above what it asserted), or signing
   in to an existing account to link it. When the number is confirmed on another
   account (an assertion below the threshold), no link is made and that account is
   never signed in: the new account does not claim the number and stays at level 2 or
   less.

Never on e-mail, phone or name.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.errors import AccountError
from accounts.identifiers import check
from accounts.realname.errors import (
    IdentityAlreadyVerified,
    IdentityTaken,
    VerificationConflict,
)
from accounts.realname.services import DocumentClaim, RealNameService, VerificationMethod
from config.sections import UpstreamProviderSettings
from federation.signals import link_removed
from federation.upstream.client import (
    PRIVATE_KEY_JWT,
    ProviderMetadata,
    UpstreamConfig,
    UpstreamIdentity,
    UpstreamRefused,
    fetch_metadata,
)
from federation.upstream.models import SECRET_CONTEXT, Upstream, UpstreamLink
from idp.core.audit.services import FAILURE, AuditLog
from idp.core.clock import Clock
from idp.core.keys import DataCipher

if TYPE_CHECKING:
    from accounts.people.models import User
    from accounts.people.services import AccountService

METADATA_MAX_AGE = timedelta(hours=1)
# how long a level an upstream asserted counts here (then the next sign-in renews it)
FEDERATION_VALID_DAYS = 365
SOURCE_PREFIX = "upstream:"
IDENTITY_EXPECT = {"resident_id": "person_id", "permit": "person_id", "foreigner_id": "person_id"}
SELF_DECLARED_LEVEL = 2


class UpstreamError(Exception):
    """A refused operation on upstreams (the command line prints ``message``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def redirect_uri(issuer: str, name: str) -> str:
    return f"{issuer.rstrip('/')}/federation/{name}/callback"


def from_settings(entry: UpstreamProviderSettings) -> UpstreamConfig:
    secret = entry.client_secret.get_secret_value() if entry.client_secret else None
    return UpstreamConfig(
        name=entry.name,
        issuer=entry.issuer,
        client_id=entry.client_id,
        client_secret=secret,
        token_auth_method=entry.token_auth_method,
        scopes=tuple(entry.scopes),
        identity_claim=entry.identity_claim,
        identity_type=entry.identity_type,
        level_claim=entry.level_claim,
        level_map=tuple((m.theirs, m.ours) for m in entry.level_map),
        link_min_level=entry.link_min_level,
        source="settings",
        display_name=entry.display_name,
    )


class MetadataCache:
    """A worker's copy of the settings upstreams' discovery and JWKS (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ProviderMetadata]] = {}

    def get(self, issuer: str) -> ProviderMetadata | None:
        with self._lock:
            entry = self._entries.get(issuer)
        if entry is None or time.monotonic() - entry[0] > METADATA_MAX_AGE.total_seconds():
            return None
        return entry[1]

    def put(self, issuer: str, metadata: ProviderMetadata) -> None:
        with self._lock:
            self._entries[issuer] = (time.monotonic(), metadata)


class UpstreamRegistry:
    def __init__(
        self,
        session: Session,
        cipher: DataCipher,
        audit: AuditLog,
        clock: Clock,
        *,
        configured: Sequence[UpstreamProviderSettings],
        cache: MetadataCache,
        fetch: Callable[[str], ProviderMetadata] = fetch_metadata,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._audit = audit
        self._clock = clock
        self._configured = tuple(configured)
        self._cache = cache
        self._fetch = fetch

    # -- reading ------------------------------------------------------------------------

    def all(self) -> list[UpstreamConfig]:
        stored = self._session.scalars(select(Upstream).order_by(Upstream.name))
        return [from_settings(e) for e in self._configured] + [self._config(r) for r in stored]

    def get(self, name: str) -> UpstreamConfig | None:
        for entry in self._configured:
            if entry.name == name:
                return from_settings(entry)
        row = self._row(name)
        return self._config(row) if row is not None else None

    def _row(self, name: str) -> Upstream | None:
        return self._session.scalar(select(Upstream).where(Upstream.name == name))

    def _config(self, row: Upstream) -> UpstreamConfig:
        secret = (
            self._cipher.decrypt(row.client_secret_encrypted, context=SECRET_CONTEXT)
            if row.client_secret_encrypted
            else None
        )
        return UpstreamConfig(
            name=row.name,
            issuer=row.issuer,
            client_id=row.client_id,
            client_secret=secret,
            token_auth_method=row.token_auth_method,
            scopes=tuple(row.scopes),
            identity_claim=row.identity_claim,
            identity_type=row.identity_type,
            level_claim=row.level_claim,
            level_map=tuple((str(theirs), int(ours)) for theirs, ours in row.level_map),
            link_min_level=row.link_min_level,
            display_name=row.display_name,
        )

    def metadata(self, config: UpstreamConfig) -> ProviderMetadata:
        """The upstream's discovery and JWKS: the cached copy while fresh, else fetched
        (and checked) again. ``UpstreamRefused`` when it cannot be."""
        row = self._row(config.name) if config.source == "cli" else None
        if row is None:
            cached = self._cache.get(config.issuer)
            if cached is None:
                cached = self._fetch(config.issuer)
                self._cache.put(config.issuer, cached)
            return cached
        fresh = row.fetched_at is not None and self._clock.now() - row.fetched_at < METADATA_MAX_AGE
        if fresh and row.discovery and row.jwks:
            return ProviderMetadata(discovery=dict(row.discovery), jwks=dict(row.jwks))
        metadata = self._fetch(config.issuer)
        self._store_metadata(row, metadata)
        return metadata

    def refresh_jwks(self, config: UpstreamConfig) -> dict[str, Any]:
        """Fetch the metadata again (an ID token named a key we do not know)."""
        metadata = self._fetch(config.issuer)
        row = self._row(config.name) if config.source == "cli" else None
        if row is None:
            self._cache.put(config.issuer, metadata)
        else:
            self._store_metadata(row, metadata)
        return metadata.jwks

    def _store_metadata(self, row: Upstream, metadata: ProviderMetadata) -> None:
        row.discovery = metadata.discovery
        row.jwks = metadata.jwks
        row.fetched_at = self._clock.now()
        self._session.commit()

    # -- the command line ---------------------------------------------------------------

    def add(self, entry: UpstreamProviderSettings) -> Upstream:
        """Store an upstream after fetching and checking its discovery (``UpstreamError``
        when it is unreachable, names another issuer, or the name or issuer is used)."""
        if entry.token_auth_method == PRIVATE_KEY_JWT and entry.client_secret is not None:
            raise UpstreamError("private_key_jwt signs with the city's key: give no client secret")
        for other in self.all():
            if other.name == entry.name:
                raise UpstreamError(f"an upstream named {entry.name!r} exists already")
            if other.issuer == entry.issuer:
                raise UpstreamError(f"upstream {other.name!r} has this issuer already")
        try:
            metadata = self._fetch(entry.issuer)
        except UpstreamRefused as exc:
            reason = {
                "issuer_mismatch": "its discovery document names another issuer",
                "unreachable": "its discovery document cannot be fetched",
            }.get(exc.code, f"its discovery document is refused ({exc.code})")
            raise UpstreamError(f"upstream {entry.issuer}: {reason}") from None
        methods = metadata.discovery.get("token_endpoint_auth_methods_supported")
        if isinstance(methods, list) and entry.token_auth_method not in methods:
            raise UpstreamError(
                f"upstream {entry.issuer}: its token endpoint does not accept "
                f"{entry.token_auth_method}"
            )
        secret = entry.client_secret.get_secret_value() if entry.client_secret else None
        row = Upstream(
            name=entry.name,
            display_name=entry.display_name,
            issuer=entry.issuer,
            client_id=entry.client_id,
            client_secret_encrypted=(
                self._cipher.encrypt(secret, context=SECRET_CONTEXT) if secret else None
            ),
            token_auth_method=entry.token_auth_method,
            scopes=list(entry.scopes),
            identity_claim=entry.identity_claim,
            identity_type=entry.identity_type,
            level_claim=entry.level_claim,
            level_map=[[m.theirs, m.ours] for m in entry.level_map],
            link_min_level=entry.link_min_level,
            discovery=metadata.discovery,
            jwks=metadata.jwks,
            fetched_at=self._clock.now(),
            created_at=self._clock.now(),
        )
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError:
            self._session.rollback()
            raise UpstreamError(f"an upstream named {entry.name!r} exists already") from None
        self._audit.record(
            "federation.upstream_add", details={"upstream": entry.name, "issuer": entry.issuer}
        )
        self._session.commit()
        return row

    def remove(self, name: str) -> None:
        row = self._row(name)
        if row is None:
            if any(entry.name == name for entry in self._configured):
                raise UpstreamError(f"upstream {name!r} is in the settings file; remove it there")
            raise UpstreamError(f"no upstream named {name!r}")
        self._session.delete(row)
        self._audit.record(
            "federation.upstream_remove", details={"upstream": name, "issuer": row.issuer}
        )
        self._session.commit()


# -- account mapping --------------------------------------------------------------------


@dataclass(frozen=True)
class Assertion:
    """What an upstream sign-in asserts about the person, as this platform reads it."""

    level: int  # after the level map; 1 when nothing maps
    number: str | None  # a normalised number that passes the identifier rules
    kind: str | None
    name: str | None

    @property
    def document(self) -> DocumentClaim | None:
        if self.number is None or self.kind is None or self.name is None:
            return None
        return DocumentClaim(self.number, self.kind, self.name, confirmed=self.level >= 3)


@dataclass(frozen=True)
class MappingOutcome:
    """The outcome of the rules: ``user`` to sign in (rules 1 and 2), or a choice to
    offer (rule 3): ``number_taken`` when the asserted number is confirmed on another
    account (which is never named)."""

    user: User | None
    linked_now: bool = False
    number_taken: bool = False
    new_account_level: int = 1


def _claim(claims: Mapping[str, Any], path: str | None) -> object:
    """A claim by name, or by a dotted path into nested objects
    (``verified_claims.claims.document_number``)."""
    if not path:
        return None
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def read_assertion(config: UpstreamConfig, identity: UpstreamIdentity) -> Assertion:
    asserted = _claim(identity.claims, config.level_claim or "acr")
    level = config.mapped_level(asserted)
    number = kind = name = None
    raw = _claim(identity.claims, config.identity_claim)
    expect = IDENTITY_EXPECT.get(config.identity_type or "resident_id")
    if isinstance(raw, str) and expect is not None and len(raw) <= 64:
        result = check(raw, expect="person_id")
        if result["valid"]:
            number, kind = str(result["normalized"]), str(result["kind"])
    if number is not None and config.identity_claim:
        parent = config.identity_claim.rpartition(".")[0]
        candidate = _claim(identity.claims, f"{parent}.name" if parent else "name")
        if isinstance(candidate, str):
            name = candidate
    if number is None:
        level = 1  # without a valid identity claim no level is carried across
    return Assertion(level=level, number=number, kind=kind, name=name)


class LinkService:
    def __init__(
        self,
        session: Session,
        accounts: AccountService,
        realname: RealNameService,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self._session = session
        self._accounts = accounts
        self._realname = realname
        self._audit = audit
        self._clock = clock

    def find(self, issuer: str, subject: str) -> UpstreamLink | None:
        return self._session.scalar(
            select(UpstreamLink).where(
                UpstreamLink.issuer == issuer, UpstreamLink.subject == subject
            )
        )

    def links(self, user: User | None = None) -> list[UpstreamLink]:
        query = select(UpstreamLink).order_by(UpstreamLink.created_at, UpstreamLink.id)
        if user is not None:
            query = query.where(UpstreamLink.user_id == user.id)
        return list(self._session.scalars(query))

    def _linked_user(self, identity: UpstreamIdentity) -> User | None:
        link = self.find(identity.issuer, identity.subject)
        return self._accounts.get(link.user_id) if link is not None else None

    def map(self, config: UpstreamConfig, identity: UpstreamIdentity) -> MappingOutcome:
        """Rules 1 and 2 (signing in), else what rule 3 offers."""
        user = self._linked_user(identity)
        if user is not None:
            return MappingOutcome(user=user)
        assertion = read_assertion(config, identity)
        holder = (
            self._realname.confirmed_holder(assertion.number)
            if assertion.number is not None
            else None
        )
        if holder is not None and assertion.level >= config.link_min_level:
            try:
                self.link(holder, config, identity, assertion)
            except UpstreamError:
                # another request linked the subject to another account meanwhile
                # (/federation/link): rule 1 holds now
                winner = self._linked_user(identity)
                if winner is None:
                    raise
                return MappingOutcome(user=winner)
            return MappingOutcome(user=holder, linked_now=True)
        if holder is not None:
            self._audit.record(
                "federation.link",
                FAILURE,
                details={"upstream": config.name, "reason": "identity_on_another_account"},
            )
            self._session.commit()
            return MappingOutcome(
                user=None,
                number_taken=True,
                new_account_level=min(assertion.level, SELF_DECLARED_LEVEL),
            )
        return MappingOutcome(user=None, new_account_level=assertion.level)

    def link(
        self,
        user: User,
        config: UpstreamConfig,
        identity: UpstreamIdentity,
        assertion: Assertion | None = None,
    ) -> UpstreamLink:
        """Link the upstream subject to ``user`` (audited); raise the level to what the
        upstream asserted when the account's confirmed identity is the asserted one."""
        existing = self.find(identity.issuer, identity.subject)
        if existing is None:
            link = self._insert(user, config, identity)
            if link is not None:
                self._session.commit()
                self._raise_level(user, config, identity, assertion)
                return link
            # another request linked the subject between our check and our insert
            existing = self.find(identity.issuer, identity.subject)
        if existing is None or existing.user_id != user.id:
            raise UpstreamError("this upstream account is linked to another account")
        return existing  # the same link, made by a request racing this one

    def _insert(
        self, user: User, config: UpstreamConfig, identity: UpstreamIdentity
    ) -> UpstreamLink | None:
        """The link, flushed and audited but not committed; None (rolled back) when
        another request linked this upstream subject first: the unique (issuer,
        subject) decides, and on PostgreSQL the second insert waits for the first
        transaction to end."""
        link = UpstreamLink(
            upstream=config.name,
            issuer=identity.issuer,
            subject=identity.subject,
            user_id=user.id,
            created_at=self._clock.now(),
        )
        self._session.add(link)
        try:
            self._session.flush()
        except IntegrityError:
            self._session.rollback()
            return None
        self._audit.record(
            "federation.link", subject=user.subject, details={"upstream": config.name}
        )
        return link

    def _raise_level(
        self,
        user: User,
        config: UpstreamConfig,
        identity: UpstreamIdentity,
        assertion: Assertion | None,
    ) -> None:
        assertion = assertion or read_assertion(config, identity)
        confirmed = self._realname.confirmed_identity(user)
        same = (
            assertion.number is not None
            and confirmed is not None
            and confirmed.verified_number_index == self._realname.number_index(assertion.number)
        )
        if same and assertion.level > self._realname.level(user):
            self._record(user, config, identity, assertion.level, document=None)

    def create_account(
        self, config: UpstreamConfig, identity: UpstreamIdentity, *, number_taken: bool
    ) -> User:
        """A new account for the upstream subject, linked, at the mapped level (at most
        2 and without the number when the number belongs to another account).

        Two first sign-ins of one subject at once (two tabs, two workers) both make an
        account; the unique link decides, and the loser removes the account it made a
        moment before (known to nobody else) and raises ``UpstreamError``: the caller
        signs in to the winner's account (``map``)."""
        if self.find(identity.issuer, identity.subject) is not None:
            raise UpstreamError("this upstream account is linked already")
        assertion = read_assertion(config, identity)
        user = self._new_user(config)
        if self._insert(user, config, identity) is None:
            self._discard(user, config)
            raise UpstreamError("this upstream account is linked already")
        self._session.commit()
        if number_taken:
            level = min(assertion.level, SELF_DECLARED_LEVEL)
            if level >= SELF_DECLARED_LEVEL:
                self._record(user, config, identity, level, document=None)
            return user
        document = assertion.document
        if assertion.level >= SELF_DECLARED_LEVEL and document is not None:
            # another account won the number meanwhile: the account stays at level 1
            with suppress(IdentityTaken, IdentityAlreadyVerified, VerificationConflict):
                self._record(user, config, identity, assertion.level, document=document)
        return user

    def _discard(self, user: User, config: UpstreamConfig) -> None:
        """Remove the account a losing first sign-in made (it has no link, no password,
        no session: nobody can have used it), audited."""
        subject = user.subject
        self._session.delete(user)
        self._audit.record(
            "federation.link",
            FAILURE,
            subject=subject,
            details={"upstream": config.name, "reason": "linked_meanwhile", "removed": True},
        )
        self._session.commit()

    def _new_user(self, config: UpstreamConfig) -> User:
        for _attempt in range(5):
            username = f"{config.name[:40]}-{secrets.token_hex(5)}"
            if not username[0].isalnum():
                username = "u" + username
            try:
                return self._accounts.register_without_password(username, via=config.name)
            except AccountError:
                continue
        raise UpstreamError("no free username")  # pragma: no cover - 2**40 names

    def _record(
        self,
        user: User,
        config: UpstreamConfig,
        identity: UpstreamIdentity,
        level: int,
        *,
        document: DocumentClaim | None,
    ) -> None:
        self._realname.record_verification(
            user,
            method=VerificationMethod.FEDERATION,
            level=level,
            source=f"{SOURCE_PREFIX}{config.name}",
            evidence_ref=identity.subject[:200],
            expires_at=self._clock.now() + timedelta(days=FEDERATION_VALID_DAYS),
            document=document,
            details={"upstream": config.name},
        )

    def unlink(self, user: User, link_id: int) -> bool:
        """Remove one of ``user``'s links; ``UpstreamError`` when it is the account's
        last way to sign in (no password, no other link)."""
        link = self._session.get(UpstreamLink, link_id)
        if link is None or link.user_id != user.id:
            return False
        others = self._session.scalar(
            select(func.count())
            .select_from(UpstreamLink)
            .where(UpstreamLink.user_id == user.id, UpstreamLink.id != link.id)
        )
        if user.password_hash is None and not others:
            self._audit.record(
                "federation.unlink",
                FAILURE,
                subject=user.subject,
                details={"upstream": link.upstream, "reason": "last_sign_in_method"},
            )
            self._session.commit()
            raise UpstreamError("last")
        upstream, issuer, subject = link.upstream, link.issuer, link.subject
        self._session.delete(link)
        self._audit.record(
            "federation.unlink", subject=user.subject, details={"upstream": link.upstream}
        )
        self._session.commit()
        link_removed.send(user, upstream=upstream, issuer=issuer, subject=subject)
        return True
