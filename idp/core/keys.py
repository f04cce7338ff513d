"""Secrets of the service: the root MAC secret and the data-encryption keyring.

* The root secret (``IDP_SECRET_KEY``, or ``<data_dir>/keys/secret.key`` in the embedded
  mode) never keys anything directly: each purpose gets its own HKDF-derived subkey.
* Personal data is encrypted with AES-256-GCM under a data key named by a key id; the
  key id is stored with every ciphertext so keys can rotate. Data keys live in
  ``<data_dir>/keys/data/<kid>.key`` (0600); the newest is the active one. A running
  worker looks for new key files every ``key_refresh_seconds`` (and at once when it
  meets a key id it has not loaded), so a key added by ``idp keys rotate-data`` reaches
  every node that shares the keys directory without a restart; keys are never unloaded.
  Re-encryption and pruning: ``idp.core.data_keys``.
* Equality lookups on encrypted values use a keyed HMAC "blind index".

Key files are created by ``idp init`` and ``idp keys rotate-data`` only: every node of a
cluster must load the same files, so a node never invents keys of its own at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from config import Settings

log = logging.getLogger(__name__)

SECRET_FILE = "secret.key"
DATA_KEYS_DIR = "data"


class KeysMissing(Exception):
    """Key material is absent; the message says how to create it."""


class DecryptionFailed(Exception):
    """A ciphertext was altered, is for another context, or its key is gone."""


def write_private_file(path: Path, content: bytes) -> None:
    """Create a file readable by the owner only; never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


class Secrets:
    """Purpose-bound subkeys derived from the root secret."""

    def __init__(self, root: bytes) -> None:
        if len(root) < 32:
            raise ValueError("the root secret must be at least 32 bytes")
        self._root = root
        self._cache: dict[str, bytes] = {}

    def subkey(self, purpose: str) -> bytes:
        key = self._cache.get(purpose)
        if key is None:
            key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"idp/" + purpose.encode()
            ).derive(self._root)
            self._cache[purpose] = key
        return key

    def mac(self, purpose: str, message: bytes) -> bytes:
        return hmac.new(self.subkey(purpose), message, hashlib.sha256).digest()

    def mac_hex(self, purpose: str, message: str) -> str:
        return self.mac(purpose, message.encode()).hex()


@dataclass(frozen=True)
class DataKey:
    kid: str
    key: bytes


class DataCipher:
    """AES-256-GCM for personal data at rest, with key ids for rotation."""

    def __init__(
        self,
        keys: list[DataKey],
        *,
        index_key: bytes,
        loader: Callable[[], list[DataKey]] | None = None,
        refresh_seconds: float = 10.0,
    ) -> None:
        if not keys:
            raise KeysMissing("no data-encryption key; run `idp init`")
        self._keys = {key.kid: AESGCM(key.key) for key in keys}
        self.active_kid = max(key.kid for key in keys)
        self._index_key = index_key
        # re-reads the key files (``reload``); None: the keys given are all there is
        self._loader = loader
        self._refresh_seconds = refresh_seconds
        self._checked = time.monotonic()
        self._missing: dict[str, float] = {}
        self._lock = threading.Lock()

    def reload(self) -> list[str]:
        """Load key files added since (``idp keys rotate-data``, here or on another node
        sharing the keys directory): the newest becomes the active key; keys already
        loaded stay. Returns the ids of the keys added."""
        if self._loader is None:
            return []
        with self._lock:
            self._checked = time.monotonic()
            added = {
                key.kid: AESGCM(key.key) for key in self._loader() if key.kid not in self._keys
            }
            if added:
                self._keys = {**self._keys, **added}
                self.active_kid = max(self._keys)
        return sorted(added)

    def _reload_if_due(self, interval: float) -> None:
        if self._loader is None or time.monotonic() - self._checked < interval:
            return
        try:
            self.reload()
        except (OSError, ValueError, KeysMissing) as exc:
            # e.g. a key file still being written: keep the keys we have, look again later
            self._checked = time.monotonic()
            log.warning("data keys not reloaded: %s", exc)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """``<kid>.<base64url(nonce || ciphertext)>``; ``context`` binds it to one column."""
        self._reload_if_due(self._refresh_seconds)
        kid = self.active_kid  # once: a reload may change it
        nonce = os.urandom(12)
        sealed = self._keys[kid].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: str) -> str:
        kid, _, body = token.partition(".")
        aead = self._keys.get(kid)
        if aead is None and self._loader is not None:
            # written under a key added since this worker loaded its keys (at most one
            # look per second for a key id that stays unknown)
            now = time.monotonic()
            if now - self._missing.get(kid, -1.0) >= 1.0:
                self._missing = {**self._missing, kid: now}
                self._reload_if_due(0.0)
            aead = self._keys.get(kid)
        if aead is None:
            raise DecryptionFailed(f"data key {kid!r} is not loaded")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise DecryptionFailed("ciphertext does not verify") from exc

    def key_id_of(self, token: str) -> str:
        return token.partition(".")[0]

    def blind_index(self, value: str, *, purpose: str) -> str:
        """Keyed hash of a normalised value for equality lookup and uniqueness."""
        message = purpose.encode() + b"\x00" + value.encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()


@dataclass
class KeyMaterial:
    secrets: Secrets
    cipher: DataCipher


def load_keys(settings: Settings) -> KeyMaterial:
    root = _root_secret(settings)
    keyring = Secrets(root)
    data_dir = settings.keys_dir / DATA_KEYS_DIR
    cipher = DataCipher(
        _read_data_keys(data_dir),
        index_key=keyring.subkey("blind-index"),
        loader=lambda: _read_data_keys(data_dir),
        refresh_seconds=settings.key_refresh_seconds,
    )
    return KeyMaterial(secrets=keyring, cipher=cipher)


def ensure_keys(settings: Settings) -> list[str]:
    """Create the missing key files (``idp init``); returns what was created."""
    created = []
    secret_path = settings.keys_dir / SECRET_FILE
    if settings.secret_key is None and not secret_path.exists():
        write_private_file(secret_path, secrets.token_urlsafe(48).encode())
        created.append(str(secret_path))
    data_dir = settings.keys_dir / DATA_KEYS_DIR
    if not _read_data_keys(data_dir):
        created.append(str(add_data_key(data_dir)))
    return created


def add_data_key(data_dir: Path) -> Path:
    """A new data key; it becomes the active one (kids sort by creation time)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    kid = f"d{stamp}{secrets.token_hex(2)}"
    path = data_dir / f"{kid}.key"
    write_private_file(path, base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)))
    return path


def _root_secret(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.keys_dir / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        raise KeysMissing(
            f"no secret key: set IDP_SECRET_KEY, or run `idp init` to create {path}"
        ) from None


def _read_data_keys(directory: Path) -> list[DataKey]:
    if not directory.is_dir():
        return []
    keys = []
    for path in sorted(directory.glob("*.key")):
        raw = base64.urlsafe_b64decode(path.read_bytes().strip())
        if len(raw) != 32:
            raise KeysMissing(f"{path} is not a 256-bit key")
        keys.append(DataKey(kid=path.stem, key=raw))
    return keys
