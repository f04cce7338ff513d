"""The accounts package's app-lifetime services, and its services for one request.

``Accounts`` is built once per app by ``accounts.init_app``: the password hasher and
the remote services' adapters (one per app, so a circuit breaker sees every request)
live as long as the app. Its methods build the request's services (they need the
request's database session and audit context). Tests pass real alternatives or fakes
for the adapters through ``create_app(adapters=...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import SecretStr

from accounts.adapters.face import DevelopmentFaceVerifier, FaceVerifier, HttpFaceVerifier
from accounts.adapters.registry import HttpRegistry, LocalRegistry, Registry
from accounts.adapters.sms import FileSmsGateway, HttpSmsGateway, SmsGateway
from accounts.credentials.passwords import PasswordHasher
from accounts.credentials.totp import TotpService
from accounts.organisations.authorisations import AuthorisationService
from accounts.organisations.services import OrganisationService
from accounts.people.activity import ActivityService
from accounts.people.services import AccountService
from accounts.realname.counter import CounterService
from accounts.realname.face import FaceCheckService
from accounts.realname.models import VerificationMethod
from accounts.realname.phone import PhoneCheckLimits, PhoneCheckService
from accounts.realname.services import RealNameService
from accounts.staff.levels import LevelService
from accounts.staff.services import StaffService
from idp.core.remote import CircuitBreaker, RemoteService, SignedClient
from idp.core.runtime import Component, Runtime, audit_log, db

log = logging.getLogger(__name__)

# Face checks are reads and may be asked again; an SMS gateway can drop a repeat by its
# request id. One retry each (registry_retries is the registry's own setting).
FACE_RETRIES = 1
SMS_RETRIES = 1
SMS_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class AccountAdapters:
    """The external services accounts depend on; None means "as the settings say"."""

    registry: Registry | None = None
    face: FaceVerifier | None = None
    sms: SmsGateway | None = None


class Accounts(Component):
    extension: ClassVar[str] = "accounts"

    def __init__(self, core: Runtime, adapters: AccountAdapters | None = None) -> None:
        adapters = adapters or AccountAdapters()
        settings = core.settings
        self.core = core
        self.hasher = PasswordHasher(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
        # None: the local copy, built per request (it reads the request's session)
        self._registry = adapters.registry or self._http_registry()
        self.face = adapters.face or self._face_verifier()
        self.sms = adapters.sms or self._sms_gateway()
        # how long a verification by each method counts (record_verification); a method
        # without a setting (certificate) is given its end by the caller
        self.level_validity: Mapping[VerificationMethod, int] = {
            VerificationMethod.SMS: settings.sms_level_valid_days,
            VerificationMethod.REGISTRY: settings.registry_level_valid_days,
            VerificationMethod.FACE: settings.face_level_valid_days,
            VerificationMethod.COUNTER: settings.counter_level_valid_days,
        }

    # -- the request's services -----------------------------------------------------------

    def account_service(self, actor: str | None = None) -> AccountService:
        core = self.core
        return AccountService(db(), self.hasher, core.keys.cipher, audit_log(actor), core.clock)

    def activity_service(self) -> ActivityService:
        return ActivityService(audit_log())

    def totp_service(self) -> TotpService:
        core = self.core
        return TotpService(db(), core.keys.cipher, core.keys.secrets, audit_log(), core.clock)

    def registry(self) -> Registry:
        """The population / legal-person registry: the registry service over HTTP
        (registry_adapter=http), or the local copy loaded with ``idp registry import``."""
        if self._registry is not None:
            return self._registry
        return LocalRegistry(db(), self.core.keys.cipher)

    def realname_service(self, actor: str | None = None) -> RealNameService:
        core = self.core
        return RealNameService(
            db(),
            core.keys.cipher,
            audit_log(actor),
            core.clock,
            self.registry(),
            validity=self.level_validity,
        )

    def phone_check_service(self) -> PhoneCheckService:
        core = self.core
        settings = core.settings
        return PhoneCheckService(
            self.realname_service(),
            core.keys.cipher,
            core.keys.secrets,
            core.store,
            core.clock,
            self.sms,
            PhoneCheckLimits(
                code_lifetime_seconds=settings.sms_code_lifetime_seconds,
                codes_per_phone_per_hour=settings.sms_codes_per_phone_per_hour,
                codes_per_account_per_day=settings.sms_codes_per_account_per_day,
            ),
        )

    def face_check_service(self) -> FaceCheckService:
        core = self.core
        return FaceCheckService(
            self.realname_service(),
            core.store,
            self.face,
            checks_per_day=core.settings.face_checks_per_account_per_day,
        )

    def staff_service(self, actor: str | None = None) -> StaffService:
        return StaffService(db(), audit_log(actor))

    def level_service(self, actor: str | None = None) -> LevelService:
        return LevelService(db(), self.realname_service(actor), audit_log(actor))

    def counter_service(self, actor: str | None = None) -> CounterService:
        return CounterService(self.realname_service(actor))

    def organisation_service(self, actor: str | None = None) -> OrganisationService:
        core = self.core
        return OrganisationService(
            db(),
            core.keys.cipher,
            self.realname_service(actor),
            core.clock,
            self.registry(),
        )

    def authorisation_service(self, actor: str | None = None) -> AuthorisationService:
        return AuthorisationService(
            db(),
            self.organisation_service(actor),
            self.realname_service(actor),
            audit_log(actor),
            self.core.clock,
        )

    # -- the remote services' adapters, as the settings say ------------------------------

    def _http_registry(self) -> Registry | None:
        settings = self.core.settings
        if settings.registry_adapter != "http":
            log.warning(
                "registry checks are answered by the LOCAL COPY (registry_adapter=local), "
                "not by the population registry service"
            )
            return None
        return HttpRegistry(
            self._client(
                RemoteService(
                    name="registry",
                    url=_url(settings.registry_url),
                    timeout_seconds=settings.registry_timeout_seconds,
                    retries=settings.registry_retries,
                    hmac_key=_key(settings.registry_hmac_key),
                    client_cert=settings.registry_client_cert,
                    client_key=settings.registry_client_key,
                    ca_file=settings.registry_ca_file,
                )
            ),
            self.core.keys.cipher,
        )

    def _sms_gateway(self) -> SmsGateway:
        """An HTTP gateway (sms_gateway=http) or the development one, which sends
        nothing and writes the messages to <data_dir>/sms.log."""
        settings = self.core.settings
        if settings.sms_gateway == "http":
            return HttpSmsGateway(
                self._client(
                    RemoteService(
                        name="sms",
                        url=_url(settings.sms_gateway_url),
                        timeout_seconds=SMS_TIMEOUT_SECONDS,
                        retries=SMS_RETRIES,
                        hmac_key=_key(settings.sms_gateway_hmac_key),
                    )
                )
            )
        path = settings.data_dir / "sms.log"
        log.warning(
            "SMS messages are NOT SENT (sms_gateway=development); they are written to %s", path
        )
        return FileSmsGateway(path, self.core.clock)

    def _face_verifier(self) -> FaceVerifier:
        """The face-verification service over HTTP (face_adapter=http) or the
        development adapter, which compares no faces."""
        settings = self.core.settings
        if settings.face_adapter == "http":
            return HttpFaceVerifier(
                self._client(
                    RemoteService(
                        name="face",
                        url=_url(settings.face_url),
                        timeout_seconds=settings.face_timeout_seconds,
                        retries=FACE_RETRIES,
                        hmac_key=_key(settings.face_hmac_key),
                    )
                )
            )
        log.warning(
            "face checks are answered by the DEVELOPMENT adapter (face_adapter=development), "
            "which compares no faces"
        )
        return DevelopmentFaceVerifier()

    def _client(self, service: RemoteService) -> SignedClient:
        settings = self.core.settings
        breaker = CircuitBreaker(
            service.name,
            self.core.clock,
            failures=settings.remote_breaker_failures,
            reset_seconds=settings.remote_breaker_reset_seconds,
        )
        return SignedClient(service, breaker)


def _url(value: str | None) -> str:
    assert value is not None, "the settings require the URL when the adapter is http"
    return value


def _key(value: SecretStr | None) -> bytes | None:
    return None if value is None else value.get_secret_value().encode()
