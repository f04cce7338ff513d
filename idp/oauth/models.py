"""What the provider keeps in the database.

Access tokens are signed JWTs and are not stored; authorization codes and revocation
markers live in the short-lived store. Secrets are stored only as keyed hashes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.core.db import Base, enum_column_values, utcnow


class AuthMethod(enum.StrEnum):
    NONE = "none"
    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"


class SubjectType(enum.StrEnum):
    PUBLIC = "public"
    PAIRWISE = "pairwise"


class Client(Base):
    """A relying party (a government system) registered by an operator."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # HMAC-SHA-256 of the secret (keyed by a subkey of the root secret); None for
    # public clients and private_key_jwt.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    token_endpoint_auth_method: Mapped[AuthMethod] = mapped_column(
        Enum(AuthMethod, native_enum=False, length=32, values_callable=enum_column_values)
    )
    redirect_uris: Mapped[list[str]]
    post_logout_redirect_uris: Mapped[list[str]]
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000))
    grant_types: Mapped[list[str]]
    # Space-separated scopes the client may ask for.
    scope: Mapped[str] = mapped_column(Text)
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    jwks: Mapped[dict[str, Any] | None]
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="ES256")
    subject_type: Mapped[SubjectType] = mapped_column(
        Enum(SubjectType, native_enum=False, length=16, values_callable=enum_column_values),
        default=SubjectType.PUBLIC,
    )
    # Pairwise subjects are computed per sector: clients of one department share one.
    sector_identifier: Mapped[str | None] = mapped_column(String(255))
    # Operated by the city itself: no consent page.
    first_party: Mapped[bool] = mapped_column(default=False)
    # The lowest real-name level (2-5; 1 = any) this client's users must have: below it
    # the user is offered a step-up, or a prompt=none request gets an error.
    min_level: Mapped[int] = mapped_column(default=1, server_default="1")
    # What the realname scope releases of the document number: "masked" or "full".
    document_number_release: Mapped[str] = mapped_column(
        String(16), default="masked", server_default="masked"
    )
    # The client serves organisations only: it never receives a personal-only token
    # (`idp clients create|update --require-org`; issue 12).
    require_org: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # RFC 8693: the audiences (client ids) this client may exchange the tokens it
    # receives for (issue 12).
    exchange_audiences: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    # The client's own vocabulary for our real-name levels (issue 13): level ("1".."5")
    # -> its acr value; the acr and verified_claims it receives use it, its acr_values
    # are read through it (`idp clients create|update --level-map OURS=THEIRS`).
    level_map: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Grant(Base):
    """One user's authorization of one client: the family of every token issued from
    one authorization code (and their refreshes). Revoking it revokes them all."""

    __tablename__ = "oauth_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The user's public id, kept so that a refresh needs no look-up of the account
    # (disabling an account revokes its grants instead).
    user_public_id: Mapped[str] = mapped_column(String(36))
    scope: Mapped[str] = mapped_column(Text)
    auth_time: Mapped[datetime]
    amr: Mapped[list[str]]
    acr: Mapped[str | None] = mapped_column(String(200))
    # The OpenID Connect session (``sid``) the grant was made in.
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    # The ``claims`` request parameter, kept for the userinfo endpoint.
    claims: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Refresh tokens of the grant end here, however often they are used.
    expires_at: Mapped[datetime]
    # Indexed: the revocation markers of the last access-token lifetime are restored
    # from here when the store lost them (``AccessTokenVerifier``).
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    # The organisation authorisation (``org_authorisations.public_id``) the person acts
    # under in this grant, asked again at every token, refresh, userinfo and
    # introspection (issue 12); None: the person for themselves.
    authorisation_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # RFC 8693: the grant whose token was exchanged for this one, and the ``act`` chain.
    parent_grant_id: Mapped[str | None] = mapped_column(String(36), index=True)
    act: Mapped[dict[str, Any] | None]
    # The public id the grant's ``sub`` is derived from when it is not the account's:
    # the organisation's, when the sign-in proved only the organisation (an enterprise
    # certificate alone; issue 12). None: the account's (``user_public_id``).
    subject_id: Mapped[str | None] = mapped_column(String(36))

    @property
    def subject_public_id(self) -> str:
        return self.subject_id or self.user_public_id


class RefreshToken(Base):
    """A refresh token (stored as a keyed hash). Each use rotates it: the old one is
    marked used, and presenting a used one again revokes the whole grant."""

    __tablename__ = "oauth_refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RevokedAccessToken(Base):
    """An access token revoked on its own (RFC 7009), kept until it would have expired
    anyway. The source of truth for revocation: the store's markers are a cache of
    this table and of ``Grant.revoked_at`` (decision 23)."""

    __tablename__ = "oauth_revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Consent(Base):
    """Scopes a user has allowed a client; asked again only for more."""

    __tablename__ = "oauth_consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class SigningKey(Base):
    """Metadata of a token-signing key; the private key is a PEM file (0600) under
    ``<data_dir>/keys/signing/<kid>.pem``."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    status: Mapped[KeyStatus] = mapped_column(
        Enum(KeyStatus, native_enum=False, length=16, values_callable=enum_column_values)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class DeliveryState:
    """The columns of something owed to another system, delivered off the request path
    with retries (``idp.oauth.outbox``); one that keeps failing is marked failed, never
    dropped."""

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))


class LogoutDelivery(DeliveryState, Base):
    """A back-channel logout notice owed to a client."""

    __tablename__ = "backchannel_deliveries"

    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    uri: Mapped[str] = mapped_column(String(2000))
    # The client's subject for the user and the session id (no token is stored: each
    # attempt signs a fresh logout token).
    subject: Mapped[str] = mapped_column(String(128))
    sid: Mapped[str | None] = mapped_column(String(64))


class SetDelivery(DeliveryState, Base):
    """A Security Event Token (RFC 8417) owed to a peer, pushed (RFC 8935) off the
    request path. The event is kept, not the signed token: each attempt signs it again
    under the same ``jti``, so the peer can tell a retry from a new event."""

    __tablename__ = "set_deliveries"

    peer: Mapped[str] = mapped_column(String(64), index=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(200))
    # the SET's ``sub_id`` (RFC 9493) and ``events`` (the one event and its fields)
    sub_id: Mapped[dict[str, Any]]
    event: Mapped[dict[str, Any]]
    # the first signing time (the SET's ``iat``, the same on every attempt)
    issued_at: Mapped[datetime]


class ReceivedSet(Base):
    """A Security Event Token a peer pushed, once it was verified: what it said and
    what was done about it. Unique per (peer, ``jti``): a retried push is answered but
    not applied twice."""

    __tablename__ = "set_received"
    __table_args__ = (UniqueConstraint("peer", "jti"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    peer: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(200))
    sub_id: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # applied | unknown_subject | not_applied (an event this service does not act on)
    outcome: Mapped[str] = mapped_column(String(32))
