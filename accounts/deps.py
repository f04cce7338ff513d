"""Builders of this package's services for the current request or CLI command.

Other packages use these (and the services' methods) rather than the models directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from flask import current_app
from pydantic import SecretStr

from accounts.counter import CounterService, StaffService
from accounts.face import DevelopmentFaceVerifier, FaceVerifier, HttpFaceVerifier
from accounts.organisations import OrganisationService
from accounts.passwords import PasswordHasher
from accounts.realname import RealNameService
from accounts.registry import HttpRegistry, LocalRegistry, Registry
from accounts.remote import CircuitBreaker, RemoteService, SignedClient
from accounts.services import AccountService
from accounts.sms import FileSmsGateway, HttpSmsGateway, SmsGateway
from accounts.totp import TotpService
from idp.core.runtime import Runtime, audit_log, db, runtime

log = logging.getLogger(__name__)

_HASHER = "accounts.hasher"
_REGISTRY = "accounts.registry"
_FACE = "accounts.face"
_SMS = "accounts.sms"
_LOCAL_REGISTRY_WARNED = "accounts.registry.local-warned"
# Face checks are reads and may be asked again; an SMS gateway can drop a repeat by its
# request id. One retry each (registry_retries is the registry's own setting).
FACE_RETRIES = 1
SMS_RETRIES = 1
SMS_TIMEOUT_SECONDS = 5.0

T = TypeVar("T")


def hasher() -> PasswordHasher:
    settings = runtime().settings
    return _per_app(
        _HASHER,
        lambda: PasswordHasher(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        ),
    )


def account_service(actor: str | None = None) -> AccountService:
    rt = runtime()
    return AccountService(db(), hasher(), rt.keys.cipher, audit_log(actor), rt.clock)


def totp_service() -> TotpService:
    rt = runtime()
    return TotpService(db(), rt.keys.cipher, rt.keys.secrets, audit_log(), rt.clock)


def realname_service(actor: str | None = None) -> RealNameService:
    rt = runtime()
    return RealNameService(
        db(),
        rt.keys.cipher,
        audit_log(actor),
        rt.clock,
        registry(),
        registry_valid_days=rt.settings.registry_level_valid_days,
    )


def registry() -> Registry:
    """The population / legal-person registry: the registry service over HTTP
    (registry_adapter=http, one client per app, so its circuit breaker sees every
    request), or the local copy loaded with ``idp registry import``."""
    rt = runtime()
    settings = rt.settings
    if settings.registry_adapter == "http":
        return _per_app(
            _REGISTRY,
            lambda: HttpRegistry(
                _client(
                    rt,
                    RemoteService(
                        name="registry",
                        url=_url(settings.registry_url),
                        timeout_seconds=settings.registry_timeout_seconds,
                        retries=settings.registry_retries,
                        hmac_key=_key(settings.registry_hmac_key),
                        client_cert=settings.registry_client_cert,
                        client_key=settings.registry_client_key,
                        ca_file=settings.registry_ca_file,
                    ),
                )
            ),
        )
    if not current_app.extensions.get(_LOCAL_REGISTRY_WARNED):
        current_app.extensions[_LOCAL_REGISTRY_WARNED] = True
        log.warning(
            "registry checks are answered by the LOCAL COPY (registry_adapter=local), "
            "not by the population registry service"
        )
    # built per call: it reads the request's database session
    return LocalRegistry(db(), rt.keys.cipher)


def sms_gateway() -> SmsGateway:
    """The SMS gateway: an HTTP gateway (sms_gateway=http) or the development one, which
    sends nothing and writes the messages to <data_dir>/sms.log. One per app."""
    rt = runtime()
    settings = rt.settings
    if settings.sms_gateway == "http":
        return _per_app(
            _SMS,
            lambda: HttpSmsGateway(
                _client(
                    rt,
                    RemoteService(
                        name="sms",
                        url=_url(settings.sms_gateway_url),
                        timeout_seconds=SMS_TIMEOUT_SECONDS,
                        retries=SMS_RETRIES,
                        hmac_key=_key(settings.sms_gateway_hmac_key),
                    ),
                )
            ),
        )
    return _per_app(_SMS, lambda: _development_sms(rt))


def face_verifier() -> FaceVerifier:
    """The face-verification service over HTTP (face_adapter=http) or the development
    adapter, which compares no faces. One per app."""
    rt = runtime()
    settings = rt.settings
    if settings.face_adapter == "http":
        return _per_app(
            _FACE,
            lambda: HttpFaceVerifier(
                _client(
                    rt,
                    RemoteService(
                        name="face",
                        url=_url(settings.face_url),
                        timeout_seconds=settings.face_timeout_seconds,
                        retries=FACE_RETRIES,
                        hmac_key=_key(settings.face_hmac_key),
                    ),
                )
            ),
        )
    return _per_app(_FACE, _development_face)


def staff_service(actor: str | None = None) -> StaffService:
    return StaffService(db(), audit_log(actor))


def counter_service(actor: str | None = None) -> CounterService:
    rt = runtime()
    return CounterService(
        db(),
        rt.keys.cipher,
        audit_log(actor),
        rt.clock,
        counter_valid_days=rt.settings.counter_level_valid_days,
    )


def organisation_service(actor: str | None = None) -> OrganisationService:
    rt = runtime()
    return OrganisationService(
        db(),
        rt.keys.cipher,
        audit_log(actor),
        rt.clock,
        registry(),
        registry_valid_days=rt.settings.registry_level_valid_days,
    )


# -- the remote services' adapters -------------------------------------------------------


def _per_app(name: str, build: Callable[[], T]) -> T:
    """The app's one instance (a breaker's state lives as long as its app)."""
    existing: T | None = current_app.extensions.get(name)
    if existing is None:
        # two threads may both build; setdefault keeps one for good
        existing = current_app.extensions.setdefault(name, build())
    return existing


def _client(rt: Runtime, service: RemoteService) -> SignedClient:
    breaker = CircuitBreaker(
        service.name,
        rt.clock,
        failures=rt.settings.remote_breaker_failures,
        reset_seconds=rt.settings.remote_breaker_reset_seconds,
    )
    return SignedClient(service, breaker)


def _url(value: str | None) -> str:
    assert value is not None, "the settings require the URL when the adapter is http"
    return value


def _key(value: SecretStr | None) -> bytes | None:
    return None if value is None else value.get_secret_value().encode()


def _development_sms(rt: Runtime) -> FileSmsGateway:
    path: Path = rt.settings.data_dir / "sms.log"
    log.warning("SMS messages are NOT SENT (sms_gateway=development); they are written to %s", path)
    return FileSmsGateway(path, rt.clock)


def _development_face() -> DevelopmentFaceVerifier:
    log.warning(
        "face checks are answered by the DEVELOPMENT adapter (face_adapter=development), "
        "which compares no faces"
    )
    return DevelopmentFaceVerifier()
