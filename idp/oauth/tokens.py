"""Issuing, checking and revoking tokens.

* Authorization codes: ``dgac_`` + 256 random bits; only their MAC is a store key; kept
  at most 60 s and taken atomically. A redeemed code is remembered for
  ``code_reuse_window``: presenting it again revokes every token issued from it.
* Access tokens: JWTs per RFC 9068 (``typ: at+jwt``), signed with the newest ES256
  key, so resource servers can check them locally. Not stored; a revoked one is
  recorded in the database (by ``jti``, or by its grant) until it would have expired,
  with a marker in the store for the fast check (``revocation.Revocations``).
* Refresh tokens: ``dgrt_`` + 256 random bits, stored as MACs, rotated on every use;
  reusing a rotated one revokes the whole grant. A grant ends after
  ``refresh_token_max_lifetime`` however often it is refreshed.
* ID tokens: OpenID Connect Core 2, signed with the client's registered algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oidc.core.util import create_half_hash
from joserfc.errors import JoseError
from sqlalchemy import bindparam, column, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from config import Settings
from idp.core.clock import Clock
from idp.core.keys import Secrets
from idp.core.store import Store
from idp.oauth.acr import AcrPolicy, ClientLevels
from idp.oauth.clients import ClientInfo
from idp.oauth.keys import SigningKeys
from idp.oauth.models import Grant, RefreshToken
from idp.oauth.revocation import Revocations

CODE_PREFIX = "dgac_"
REFRESH_PREFIX = "dgrt_"
ACCESS_TOKEN_TYP = "at+jwt"
_TOKEN_MAC_PURPOSE = "token-hash"
_PAIRWISE_PURPOSE = "pairwise-subject"
_VERIFIED_CACHE_LIMIT = 20_000

# Prebuilt statements for the token endpoint's hot paths (no ORM unit of work).
_INSERT_GRANT = insert(Grant)
_INSERT_REFRESH = insert(RefreshToken)
_FIND_REFRESH = (
    select(
        RefreshToken.id.label("token_id"),
        RefreshToken.created_at.label("token_created_at"),
        RefreshToken.expires_at.label("token_expires_at"),
        RefreshToken.used_at,
        *Grant.__table__.columns,
    )
    .join(Grant, Grant.id == RefreshToken.grant_id)
    .where(RefreshToken.token_hash == bindparam("token_hash"))
)
# PostgreSQL: find the token, check its grant (live, and the presenting client's), mark
# the token used and insert the next one in one statement (the refresh grant's path; a
# token found but not usable is told apart afterwards by the read-only look-up).
_USE_REFRESH_PG = text("""
WITH used AS (
  UPDATE oauth_refresh_tokens t SET used_at = :now
  FROM oauth_grants g
  WHERE t.token_hash = :old AND t.used_at IS NULL AND t.expires_at > :now
    AND g.id = t.grant_id AND g.client_id = :client_id
    AND g.revoked_at IS NULL AND g.expires_at > :now
  RETURNING t.grant_id
), live AS (
  SELECT g.* FROM used JOIN oauth_grants g ON g.id = used.grant_id
), next AS (
  INSERT INTO oauth_refresh_tokens (grant_id, token_hash, created_at, expires_at)
  SELECT live.id, :new, :now, LEAST(CAST(:idle AS timestamptz), live.expires_at) FROM live
  RETURNING id, expires_at
)
SELECT live.*, next.id AS next_id, next.expires_at AS next_expires_at FROM live, next
""").columns(*Grant.__table__.columns, column("next_id"), column("next_expires_at"))
_MARK_REFRESH_USED = (
    update(RefreshToken)
    .where(RefreshToken.id == bindparam("token_id"), RefreshToken.used_at.is_(None))
    .values(used_at=bindparam("now"))
)


@dataclass
class CodeRecord:
    """What an authorization code stands for (kept in the store, never in a URL)."""

    client_id: str
    redirect_uri: str
    scope: str
    user_id: int
    user_public_id: str
    code_challenge: str
    code_challenge_method: str
    auth_time: float
    amr: list[str]
    acr: str | None
    sid: str | None
    nonce: str | None
    claims: dict[str, Any] | None
    grant_id: str
    # the organisation authorisation the person acts under (None: for themselves)
    authorisation_id: str | None = None
    # the organisation's public id when the sign-in proved only the organisation: the
    # subject of the tokens (``Grant.subject_id``)
    subject_id: str | None = None

    # -- Authlib's AuthorizationCodeMixin
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class RefreshTokenReused(Exception):
    """A rotated refresh token was presented again; its grant is now revoked."""


@dataclass(frozen=True)
class GrantData:
    """A grant as read on the token endpoint's hot paths (plain values, no ORM)."""

    id: str
    client_id: str
    user_id: int
    user_public_id: str
    scope: str
    auth_time: datetime
    amr: list[str]
    acr: str | None
    sid: str | None
    claims: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    # the organisation authorisation the person acts under (None: for themselves)
    authorisation_id: str | None = None
    # RFC 8693: the exchanged grant and the ``act`` chain
    parent_grant_id: str | None = None
    act: dict[str, Any] | None = None
    # the organisation's public id when it is the subject (``Grant.subject_id``)
    subject_id: str | None = None

    @property
    def subject_public_id(self) -> str:
        return self.subject_id or self.user_public_id


_GRANT_FIELDS = [column.key for column in Grant.__table__.columns]


@dataclass(frozen=True)
class IssuedRefresh:
    token_id: int
    grant: GrantData
    created_at: datetime
    expires_at: datetime
    # set when the token was already rotated in the same statement that found it
    next_token: str | None = None

    # -- Authlib's TokenMixin (what the refresh grant asks of it)
    def check_client(self, client: ClientInfo) -> bool:
        return self.grant.client_id == client.client_id

    def get_scope(self) -> str:
        return self.grant.scope


def token_mac(secrets_: Secrets, token: str) -> str:
    return secrets_.mac_hex(_TOKEN_MAC_PURPOSE, token)


class AccessTokenVerifier:
    """Checks access tokens this service issued: signature, type, issuer, expiry, then
    revocation. Signature results are cached per worker by token (a resource server
    presents the same token many times); revocation is checked every time."""

    def __init__(
        self, keys: SigningKeys, revocations: Revocations, issuer: str, clock: Clock
    ) -> None:
        self._keys = keys
        self._revocations = revocations
        self._issuer = issuer
        self._clock = clock
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid, unexpired, unrevoked access token, else None."""
        claims = self._verified.get(token)
        now = self._clock.now().timestamp()
        if claims is None:
            claims = self._verify(token)
            if claims is None:
                return None
            with self._lock:
                if len(self._verified) >= _VERIFIED_CACHE_LIMIT:
                    self._verified.clear()
                self._verified[token] = claims
        if claims["exp"] <= now:
            self._verified.pop(token, None)
            return None
        if self.is_revoked(claims):
            return None
        return claims

    def _verify(self, token: str) -> dict[str, Any] | None:
        if token.count(".") != 2 or len(token) > 8192:
            return None
        try:
            header, claims = self._keys.verify(token)
        except (JoseError, ValueError):
            return None
        if str(header.get("typ", "")).lower() not in {ACCESS_TOKEN_TYP, "application/at+jwt"}:
            return None  # an ID token or a logout token is no access token
        if claims.get("iss") != self._issuer:
            return None
        if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("jti"), str):
            return None
        return claims

    def is_revoked(self, claims: dict[str, Any]) -> bool:
        grant_id = claims.get("gid")
        return self._revocations.is_revoked(
            claims["jti"], grant_id if isinstance(grant_id, str) else None
        )


class TokenService:
    def __init__(
        self,
        session: Session,
        store: Store,
        keys: SigningKeys,
        secrets_: Secrets,
        settings: Settings,
        clock: Clock,
        revocations: Revocations,
    ) -> None:
        self._session = session
        self._store = store
        self._revocations = revocations
        self._keys = keys
        self._secrets = secrets_
        self._settings = settings
        self._clock = clock

    # -- subjects

    def subject(self, client: ClientInfo, public_id: str) -> str:
        """The user's ``sub`` for this client: public, or pairwise per sector (OIDC 8.1)."""
        if not client.pairwise:
            return public_id
        digest = self._secrets.mac(_PAIRWISE_PURPOSE, f"{client.sector}|{public_id}".encode())
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # -- authorization codes

    def new_code(self, record: CodeRecord) -> str:
        code = CODE_PREFIX + secrets.token_urlsafe(32)
        self._store.set(
            f"code:{token_mac(self._secrets, code)}",
            json.dumps(asdict(record), separators=(",", ":")).encode(),
            self._settings.authorization_code_lifetime,
        )
        return code

    def take_code(self, code: str) -> CodeRecord | None:
        """Consume a code (atomically: of two parallel redemptions one wins).

        A code seen before is a replay: the grant made from it is revoked.
        """
        if not code.startswith(CODE_PREFIX) or len(code) > 100:
            return None
        digest = token_mac(self._secrets, code)
        raw = self._store.take(f"code:{digest}")
        if raw is None:
            grant_id = self._store.get(f"code-used:{digest}")
            if grant_id is not None:
                self.revoke_grant(grant_id.decode(), "code_replay")
            return None
        record = CodeRecord(**json.loads(raw))
        self._store.set(
            f"code-used:{digest}", record.grant_id.encode(), self._settings.code_reuse_window
        )
        return record

    # -- grants

    def create_grant(self, record: CodeRecord) -> GrantData:
        """Record the grant a code was redeemed for (a Core INSERT: this is on the token
        endpoint's path)."""
        now = self._clock.now()
        values: dict[str, Any] = {
            "id": record.grant_id,
            "client_id": record.client_id,
            "user_id": record.user_id,
            "user_public_id": record.user_public_id,
            "scope": record.scope,
            "auth_time": datetime.fromtimestamp(record.auth_time, now.tzinfo),
            "amr": record.amr,
            "acr": record.acr,
            "sid": record.sid,
            "claims": record.claims,
            "created_at": now,
            "expires_at": now + timedelta(seconds=self._settings.refresh_token_max_lifetime),
            "revoked_at": None,
            "revoked_reason": None,
            "authorisation_id": record.authorisation_id,
            "parent_grant_id": None,
            "act": None,
            "subject_id": record.subject_id,
        }
        if self._revocations.grant_marked(record.grant_id):
            # the code was replayed while this redemption was under way
            values.update(revoked_at=now, revoked_reason="code_replay")
        self._session.connection().execute(_INSERT_GRANT, values)
        return GrantData(**values)

    def grant(self, grant_id: str) -> Grant | None:
        return self._session.get(Grant, grant_id)

    def revoke_grant(self, grant_id: str, reason: str) -> None:
        """End a grant: its refresh tokens stop working, its access tokens are revoked
        until they would have expired (committed first, then marked in the store)."""
        self.revoke_grant_ids([grant_id], reason)

    def revoke_grants(self, grants: list[Grant], reason: str) -> None:
        self.revoke_grant_ids([grant.id for grant in grants], reason)

    def revoke_grant_ids(self, grant_ids: list[str], reason: str) -> None:
        """Revoke the grants and, level by level, the grants exchanged from them
        (RFC 8693, ``parent_grant_id``): a token exchanged from a revoked one dies with
        it. Each level is committed and marked before its children are looked up, so an
        exchange committed meanwhile is either found here or sees its parent revoked
        (``idp.oauth.exchange`` checks again after its commit)."""
        reason_here = reason
        seen: set[str] = set()
        while grant_ids:
            seen.update(grant_ids)
            self._session.execute(
                update(Grant)
                .where(Grant.id.in_(grant_ids), Grant.revoked_at.is_(None))
                .values(revoked_at=self._clock.now(), revoked_reason=reason_here),
                execution_options={"synchronize_session": False},
            )
            self._session.commit()
            self._revocations.grants_revoked(grant_ids)
            children = self._session.scalars(
                select(Grant.id).where(
                    Grant.parent_grant_id.in_(grant_ids), Grant.revoked_at.is_(None)
                )
            )
            grant_ids = [child for child in children if child not in seen]
            reason_here = "parent_revoked"

    def active_grants(self, *, user_id: int, client_id: str | None = None) -> list[Grant]:
        query = select(Grant).where(Grant.user_id == user_id, Grant.revoked_at.is_(None))
        if client_id is not None:
            query = query.where(Grant.client_id == client_id)
        return list(self._session.scalars(query))

    # -- access tokens

    def access_token(
        self,
        client: ClientInfo,
        scope: str,
        *,
        subject: str,
        grant: Grant | GrantData | None = None,
        extra: dict[str, Any] | None = None,
        audience: str | None = None,
        not_after: int | None = None,
    ) -> tuple[str, int]:
        """A JWT access token for ``client``; ``extra`` claims (``org``, ``act``) are
        added last and never replace a registered one. A token exchange
        (``idp.oauth.exchange``) names another ``audience``, ends it no later than
        ``not_after`` (the subject token's expiry) and carries the grant's ``act``
        chain, which wins over an ``act`` in ``extra``."""
        now = int(self._clock.now().timestamp())
        lifetime = self._settings.access_token_lifetime
        if not_after is not None:
            lifetime = max(min(lifetime, not_after - now), 1)
        claims: dict[str, Any] = {
            "iss": self._settings.issuer,
            "sub": subject,
            "aud": audience or client.client_id,
            "client_id": client.client_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        if grant is not None:
            claims.update(
                auth_time=int(grant.auth_time.timestamp()),
                amr=grant.amr,
                gid=grant.id,
            )
            if grant.acr:
                claims["acr"] = grant.acr
            if grant.sid:
                claims["sid"] = grant.sid
            if grant.act:
                claims["act"] = grant.act
        for name, value in (extra or {}).items():
            claims.setdefault(name, value)
        return self._keys.sign(claims, typ=ACCESS_TOKEN_TYP), lifetime

    def revoke_access_token(self, claims: dict[str, Any]) -> None:
        """Revoke one access token until it would have expired (committed first)."""
        expires_at = datetime.fromtimestamp(int(claims["exp"]), self._clock.now().tzinfo)
        self._revocations.revoke_access_token(self._session, claims["jti"], expires_at)

    # -- ID tokens

    def id_token(
        self,
        client: ClientInfo,
        subject: str,
        grant: Grant | GrantData,
        *,
        nonce: str | None,
        access_token: str | None,
        extra: dict[str, Any],
    ) -> str:
        now = int(self._clock.now().timestamp())
        alg = client.id_token_signed_response_alg
        claims: dict[str, Any] = {
            "iss": self._settings.issuer,
            "sub": subject,
            "aud": [client.client_id],
            "azp": client.client_id,
            "iat": now,
            "exp": now + self._settings.id_token_lifetime,
            "auth_time": int(grant.auth_time.timestamp()),
            "amr": grant.amr,
        }
        if grant.acr:  # in the client's vocabulary, when it registered one
            policy = AcrPolicy.from_settings(self._settings)
            claims["acr"] = ClientLevels.of(policy, client).to_client(grant.acr)
        if grant.sid:
            claims["sid"] = grant.sid
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            half = create_half_hash(access_token, alg)
            if half is not None:
                claims["at_hash"] = half.decode()
        for name, value in extra.items():
            claims.setdefault(name, value)
        return self._keys.sign(claims, alg=alg)

    # -- refresh tokens

    def new_refresh_token(self, grant: GrantData) -> str:
        token = REFRESH_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        expires = min(
            now + timedelta(seconds=self._settings.refresh_token_idle_lifetime), grant.expires_at
        )
        self._session.execute(
            _INSERT_REFRESH,
            {
                "grant_id": grant.id,
                "token_hash": token_mac(self._secrets, token),
                "created_at": now,
                "expires_at": expires,
                "used_at": None,
            },
        )
        return token

    def find_refresh_token(self, token: str) -> IssuedRefresh | None:
        """The refresh token if it can be used now (one query: token and grant). A
        rotated one presented again revokes its grant (RFC 9700 4.14.2) and raises
        ``RefreshTokenReused``."""
        if not token.startswith(REFRESH_PREFIX) or len(token) > 100:
            return None
        found = (
            self._session.connection()
            .execute(_FIND_REFRESH, {"token_hash": token_mac(self._secrets, token)})
            .first()
        )
        if found is None:
            return None
        row = found._mapping
        grant = GrantData(**{name: row[name] for name in _GRANT_FIELDS})
        expires_at = row["token_expires_at"]
        if row["used_at"] is not None:
            if grant.revoked_at is None:
                self.revoke_grant(grant.id, "refresh_token_reuse")
            raise RefreshTokenReused()
        now = self._clock.now()
        if grant.revoked_at is not None or expires_at <= now or grant.expires_at <= now:
            return None
        return IssuedRefresh(row["token_id"], grant, row["token_created_at"], expires_at)

    def use_refresh_token(
        self, token: str, client_id: str, *, own_transaction: bool = False
    ) -> IssuedRefresh | None:
        """Find the client's refresh token to refresh with. On PostgreSQL it is marked
        used and its successor issued in one statement (``next_token``); ``rotate``
        finishes the job elsewhere. With ``own_transaction`` that statement commits by
        itself (one round trip instead of three: no BEGIN, no COMMIT), for callers that
        check nothing else before answering. Reuse is detected as in
        ``find_refresh_token``; another client's token is not found and stays usable."""
        if self._session.get_bind().dialect.name != "postgresql":
            return self.find_refresh_token(token)
        if not token.startswith(REFRESH_PREFIX) or len(token) > 100:
            return None
        successor = REFRESH_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        parameters = {
            "now": now,
            "old": token_mac(self._secrets, token),
            "new": token_mac(self._secrets, successor),
            "idle": now + timedelta(seconds=self._settings.refresh_token_idle_lifetime),
            "client_id": client_id,
        }
        if own_transaction:
            engine = self._session.get_bind()
            assert isinstance(engine, Engine)  # sessions are bound to the engine
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                found = connection.execute(_USE_REFRESH_PG, parameters).first()
        else:
            found = self._session.connection().execute(_USE_REFRESH_PG, parameters).first()
        if found is None:
            # unknown, expired, revoked, another client's, or used before: undo a
            # half-done rotation and let the read-only look-up say which (a reuse
            # revokes the grant)
            self._session.rollback()
            self.find_refresh_token(token)
            return None
        row = found._mapping
        grant = GrantData(**{name: row[name] for name in _GRANT_FIELDS})
        return IssuedRefresh(row["next_id"], grant, now, row["next_expires_at"], successor)

    def rotate(self, issued: IssuedRefresh) -> str:
        """Mark the token used (once: of two parallel uses one wins) and make the next."""
        if issued.next_token is not None:
            return issued.next_token
        result = self._session.connection().execute(
            _MARK_REFRESH_USED, {"token_id": issued.token_id, "now": self._clock.now()}
        )
        if result.rowcount != 1:
            self._session.rollback()
            self.revoke_grant(issued.grant.id, "refresh_token_reuse")
            raise RefreshTokenReused()
        return self.new_refresh_token(issued.grant)

    def describe_refresh_token(self, token: str) -> dict[str, Any] | None:
        """What introspection says of a usable refresh token (with its ``grant``)."""
        try:
            issued = self.find_refresh_token(token)
        except RefreshTokenReused:
            return None
        if issued is None:
            return None
        return {
            "scope": issued.grant.scope,
            "client_id": issued.grant.client_id,
            "exp": int(min(issued.expires_at, issued.grant.expires_at).timestamp()),
            "iat": int(issued.created_at.timestamp()),
            "token_type": "refresh_token",
            "grant": issued.grant,
        }


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def pkce_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
