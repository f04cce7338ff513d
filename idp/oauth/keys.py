"""Token-signing keys: creation, rotation, pruning, the JWKS, signing and verifying.

Every key has a ``kid`` (its RFC 7638 thumbprint). ES256 is the default algorithm;
RS256 keys exist for clients registered for it. ``rotate`` adds a new active key per
algorithm and retires the previous ones; retired keys stay in the JWKS (tokens they
signed still verify) until ``prune`` removes them once every such token has expired.
Tokens are always signed with the newest active key of their algorithm.

The metadata is in the database and the private keys are PEM files (0600) under
``<data_dir>/keys/signing/``, so every node sees a rotation: each worker re-reads the
key list every ``key_refresh_seconds`` and whenever it meets an unknown ``kid``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from idp.core.clock import Clock
from idp.core.db import Database
from idp.core.keys import write_private_file
from idp.oauth.models import KeyStatus, SigningKey

SUPPORTED_ALGS = ("ES256", "RS256")
DEFAULT_ALG = "ES256"
SIGNING_DIR = "signing"
# Algorithms accepted from clients' own keys (private_key_jwt assertions).
CLIENT_ASSERTION_ALGS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]


class KeyError_(Exception):  # noqa: N801 - avoids shadowing the builtin KeyError
    """A signing key is missing or unusable."""


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    alg: str
    status: KeyStatus
    created_at: datetime
    retired_at: datetime | None
    key: ECKey | RSAKey


def _generate(alg: str) -> ECKey | RSAKey:
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return ECKey.import_key(pem)
    if alg == "RS256":
        private_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private_rsa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return RSAKey.import_key(pem)
    raise KeyError_(f"unsupported algorithm {alg}")


def _pem(key: ECKey | RSAKey) -> bytes:
    data = key.as_pem(private=True)
    return data if isinstance(data, bytes) else data.encode()


class SigningKeys:
    """The key ring of one app; safe to share between the threads of a worker."""

    def __init__(
        self,
        database: Database,
        keys_dir: Path,
        clock: Clock,
        *,
        refresh_seconds: int,
        retain_seconds: int,
    ) -> None:
        self._database = database
        self._dir = keys_dir / SIGNING_DIR
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._retain_seconds = retain_seconds
        self._lock = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}
        self._signing: dict[str, LoadedKey] = {}
        self._jwks_json = b'{"keys":[]}'
        self._keyset = KeySet([])
        self._checked_at = 0.0
        self._last_forced = 0.0
        self._fingerprint: tuple[tuple[str, str], ...] = ()

    # -- loading

    def reload(self) -> None:
        """Re-read the key list (and any new PEM files) now."""
        with self._database.session() as session:
            rows = session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
        fingerprint = tuple((row.kid, row.status.value) for row in rows)
        with self._lock:
            self._checked_at = time.monotonic()
            if fingerprint == self._fingerprint and self._keys:
                return
            loaded: dict[str, LoadedKey] = {}
            for row in rows:
                existing = self._keys.get(row.kid)
                key = existing.key if existing else self._read_pem(row.kid, row.alg)
                loaded[row.kid] = LoadedKey(
                    row.kid, row.alg, row.status, row.created_at, row.retired_at, key
                )
            signing: dict[str, LoadedKey] = {}
            for entry in loaded.values():  # ordered by creation: the newest wins
                if entry.status is KeyStatus.ACTIVE:
                    signing[entry.alg] = entry
            self._keys = loaded
            self._signing = signing
            public = [self._public_jwk(entry) for entry in loaded.values()]
            self._jwks_json = json.dumps({"keys": public}, separators=(",", ":")).encode()
            self._keyset = KeySet([entry.key for entry in loaded.values()])
            self._fingerprint = fingerprint

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked_at > self._refresh_seconds:
            self.reload()

    def _read_pem(self, kid: str, alg: str) -> ECKey | RSAKey:
        path = self._dir / f"{kid}.pem"
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise KeyError_(
                f"the private key {path} is missing: every node needs the same key files"
            ) from None
        key: ECKey | RSAKey = ECKey.import_key(pem) if alg == "ES256" else RSAKey.import_key(pem)
        key.ensure_kid()
        return key

    @staticmethod
    def _public_jwk(entry: LoadedKey) -> dict[str, Any]:
        data = dict(entry.key.as_dict(private=False))
        data.update(kid=entry.kid, use="sig", alg=entry.alg)
        return data

    # -- use

    def signing_key(self, alg: str = DEFAULT_ALG) -> LoadedKey:
        self._maybe_reload()
        entry = self._signing.get(alg)
        if entry is None:
            raise KeyError_(f"no active {alg} signing key; run `idp init` or `idp keys rotate`")
        return entry

    def sign(self, claims: dict[str, Any], *, alg: str = DEFAULT_ALG, typ: str = "JWT") -> str:
        entry = self.signing_key(alg)
        header = {"alg": alg, "kid": entry.kid, "typ": typ}
        return jwt.encode(header, claims, entry.key, algorithms=[alg])

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check a token this service signed; returns (header, claims).

        Raises ``JoseError`` (bad signature, unknown key, ``alg: none``, malformed...).
        Claims (exp, iss...) are the caller's to check.
        """
        self._maybe_reload()
        try:
            result = jwt.decode(token, self._keyset, algorithms=list(SUPPORTED_ALGS))
        except JoseError:
            # a key made by another node since our last look?
            if not self._force_reload():
                raise
            result = jwt.decode(token, self._keyset, algorithms=list(SUPPORTED_ALGS))
        return dict(result.header), dict(result.claims)

    def _force_reload(self) -> bool:
        now = time.monotonic()
        if now - self._last_forced < 1:
            return False
        self._last_forced = now
        before = self._fingerprint
        self.reload()
        return self._fingerprint != before

    def jwks_json(self) -> bytes:
        self._maybe_reload()
        return self._jwks_json

    def describe(self) -> list[dict[str, Any]]:
        self._maybe_reload()
        return [
            {
                "kid": entry.kid,
                "alg": entry.alg,
                "status": entry.status.value,
                "created_at": entry.created_at.isoformat(),
                "retired_at": entry.retired_at.isoformat() if entry.retired_at else None,
                "signing": self._signing.get(entry.alg) is entry,
            }
            for entry in self._keys.values()
        ]

    # -- administration (run by `idp init` / `idp keys ...`)

    def ensure(self, session: Session) -> list[str]:
        """Create a key for every algorithm that has no active key."""
        active = {
            row.alg
            for row in session.scalars(
                select(SigningKey).where(SigningKey.status == KeyStatus.ACTIVE)
            )
        }
        created = [self._create(session, alg) for alg in SUPPORTED_ALGS if alg not in active]
        session.commit()
        self.reload()
        return created

    def rotate(self, session: Session) -> list[str]:
        """A new active key per algorithm; the previous active keys become retired."""
        now = self._clock.now()
        session.execute(
            update(SigningKey)
            .where(SigningKey.status == KeyStatus.ACTIVE)
            .values(status=KeyStatus.RETIRED, retired_at=now)
        )
        created = [self._create(session, alg) for alg in SUPPORTED_ALGS]
        session.commit()
        self.reload()
        return created

    def prune(self, session: Session) -> list[str]:
        """Remove retired keys that no unexpired token can have been signed with."""
        cutoff = self._clock.now() - timedelta(seconds=self._retain_seconds)
        rows = session.scalars(
            select(SigningKey).where(
                SigningKey.status == KeyStatus.RETIRED, SigningKey.retired_at < cutoff
            )
        ).all()
        kids = [row.kid for row in rows]
        if kids:
            session.execute(delete(SigningKey).where(SigningKey.kid.in_(kids)))
            session.commit()
            for kid in kids:
                (self._dir / f"{kid}.pem").unlink(missing_ok=True)
        self.reload()
        return kids

    def _create(self, session: Session, alg: str) -> str:
        key = _generate(alg)
        kid = key.thumbprint()
        write_private_file(self._dir / f"{kid}.pem", _pem(key))
        session.add(
            SigningKey(kid=kid, alg=alg, status=KeyStatus.ACTIVE, created_at=self._clock.now())
        )
        session.flush()
        return kid


def peek_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified (to route or reject early)."""
    try:
        return dict(jws.extract_compact(token.encode()).headers())
    except (JoseError, ValueError):
        return {}
