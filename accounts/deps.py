"""Builders of this package's services for the current request or CLI command.

Other packages use these (and the services' methods) rather than the models directly.
"""

from __future__ import annotations

from flask import current_app

from accounts.counter import CounterService, StaffService
from accounts.face import DevelopmentFaceVerifier, FaceVerifier
from accounts.organisations import OrganisationService
from accounts.passwords import PasswordHasher
from accounts.realname import RealNameService
from accounts.registry import LocalRegistry, Registry
from accounts.services import AccountService
from accounts.sms import FileSmsGateway, SmsGateway
from accounts.totp import TotpService
from idp.core.runtime import audit_log, db, runtime

_HASHER = "accounts.hasher"


def hasher() -> PasswordHasher:
    existing: PasswordHasher | None = current_app.extensions.get(_HASHER)
    if existing is None:
        settings = runtime().settings
        existing = PasswordHasher(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
        current_app.extensions[_HASHER] = existing
    return existing


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
    """The population / legal-person registry: the local copy (``idp registry import``)
    until the HTTP adapter is configured."""
    return LocalRegistry(db(), runtime().keys.cipher)


def sms_gateway() -> SmsGateway:
    """The SMS gateway: the development one (messages written to <data_dir>/sms.log)
    until the HTTP gateway is configured."""
    rt = runtime()
    return FileSmsGateway(rt.settings.data_dir / "sms.log", rt.clock)


def face_verifier() -> FaceVerifier:
    """The face-verification service: the development adapter until the HTTP one is
    configured."""
    return DevelopmentFaceVerifier()


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
