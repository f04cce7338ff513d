"""Every setting the service reads, with its type, default and validation.

Settings come from, in increasing priority: defaults, the TOML file named by
``IDP_CONFIG``, and ``IDP_<NAME>`` environment variables. Nothing else in the code
base reads the environment for configuration. Tests build ``Settings`` directly.
The lists (local CAs, upstream providers, peers) are sections, ``config.sections``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from config.fields import http_url
from config.sections import (
    SECTIONS,
    LocalCaSettings,
    PeerSettings,
    UpstreamProviderSettings,
    check_unique,
)

ENV_PREFIX = "IDP_"
CONFIG_FILE_VARIABLE = "IDP_CONFIG"
# Variables with this prefix belong to the test suite, not to the service.
_IGNORED_PREFIXES = ("IDP_TEST_", "IDP_BENCH_")

OWASP_MIN_ARGON2_MEMORY_KIB = 19 * 1024
_HEADER_NAME = re.compile(r"[A-Za-z0-9]{1,32}(?:-[A-Za-z0-9]{1,32}){0,7}")
OWASP_MIN_ARGON2_TIME_COST = 2


class SettingsError(Exception):
    """A setting is missing, unknown or invalid; the message names it."""


class Settings(BaseModel):
    """The service's configuration. Immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # -- identity of the service
    issuer: str = Field(
        default="http://127.0.0.1:5000",
        description="Public base URL; the OpenID Connect issuer identifier.",
    )

    # -- storage
    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for the SQLite file, key files and runtime state.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/idp.sqlite3. "
        "Production: postgresql+psycopg://user:password@host/db.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    redis_url: str | None = Field(
        default=None,
        description="Short-lived state store (one Redis, redis+sentinel:// or "
        "redis+cluster://); unset means the in-process store (one worker process only).",
    )
    redis_namespace: str = Field(
        default="idp:",
        pattern=r"^[A-Za-z0-9:_.-]{1,64}$",
        description="Prefix of every key this service writes to Redis.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Root secret for MACs (CSRF, cookies, blind indexes, audit chain). "
        "Unset: generated once into <data_dir>/keys/secret.key.",
    )

    # -- server
    workers: int = Field(default=1, ge=1, le=256, description="Worker processes of `idp serve`.")
    threads: int = Field(default=1, ge=1, le=256, description="Threads per worker.")
    trusted_proxy_count: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Reverse proxies in front of the service whose X-Forwarded-* to trust.",
    )
    max_request_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    client_cert_header: str = Field(
        default="X-SSL-Client-Cert",
        description="Request header in which the TLS-terminating proxy forwards the "
        "client certificate (docs/deployment/nginx-mtls.md).",
    )
    client_cert_proxies: tuple[str, ...] = Field(
        default=(),
        max_length=64,
        description="Addresses or CIDR networks of the proxies whose client-certificate "
        "header is believed (comma-separated in the environment); empty: never.",
    )

    # -- logging and operations
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that /metrics requires; unset means /metrics is off.",
    )

    # -- user interface
    default_locale: Literal["zh_CN", "en"] = "zh_CN"
    registration_enabled: bool = True

    # -- sessions
    session_idle_timeout: int = Field(default=30 * 60, ge=60, le=7 * 24 * 3600)
    session_max_age: int = Field(default=8 * 3600, ge=300, le=30 * 24 * 3600)
    reauth_max_age_seconds: int = Field(
        default=300,
        ge=30,
        le=24 * 3600,
        description="A sensitive change (password, authenticator app, recovery codes, "
        "deletion) needs a sign-in or password confirmation at most this old.",
    )
    account_deletion_grace_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="Days between asking for an account's deletion and its erasure "
        "(`idp users purge-deleted`); signing in meanwhile offers to cancel.",
    )

    # -- passwords (Argon2id; OWASP minimum is m=19 MiB, t=2, p=1)
    argon2_memory_kib: int = Field(default=OWASP_MIN_ARGON2_MEMORY_KIB, ge=8, le=4 * 1024 * 1024)
    argon2_time_cost: int = Field(default=OWASP_MIN_ARGON2_TIME_COST, ge=1, le=20)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    allow_weak_password_hashing: bool = Field(
        default=False,
        description="Permit Argon2 parameters below OWASP's minimum (test suites only).",
    )

    # -- throttling (NIST SP 800-63B 5.2.2)
    login_failures_before_backoff: int = Field(default=5, ge=1, le=100)
    login_backoff_base_seconds: int = Field(default=30, ge=1, le=3600)
    login_backoff_max_seconds: int = Field(default=15 * 60, ge=1, le=24 * 3600)
    login_failure_window_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    ip_max_failures: int = Field(default=100, ge=1, le=100_000)
    ip_window_seconds: int = Field(default=15 * 60, ge=10, le=24 * 3600)
    registrations_per_ip_per_hour: int = Field(default=20, ge=1, le=100_000)

    # -- the OpenID Connect provider
    access_token_lifetime: int = Field(default=600, ge=60, le=24 * 3600)
    id_token_lifetime: int = Field(default=600, ge=60, le=24 * 3600)
    authorization_code_lifetime: int = Field(default=60, ge=5, le=60)
    refresh_token_idle_lifetime: int = Field(default=14 * 24 * 3600, ge=300, le=365 * 24 * 3600)
    refresh_token_max_lifetime: int = Field(default=30 * 24 * 3600, ge=300, le=365 * 24 * 3600)
    code_reuse_window: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a redeemed code is remembered, so a replay revokes its tokens.",
    )
    client_cache_seconds: int = Field(
        default=5, ge=0, le=300, description="How long a worker caches a client's registration."
    )
    key_refresh_seconds: int = Field(
        default=10, ge=1, le=3600, description="How often a worker looks for rotated keys."
    )
    revocation_sync_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description=(
            "How often a worker copies revocations recorded in the database to the store "
            "(a safety net; a store that lost its data is restored before the next check)."
        ),
    )
    backchannel_max_attempts: int = Field(default=12, ge=1, le=50)
    backchannel_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    set_push_max_attempts: int = Field(default=12, ge=1, le=50)
    set_push_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    set_refusals_per_address: int = Field(
        default=100,
        ge=1,
        description="Refused pushed SETs from one address in ten minutes before it gets 429s.",
    )
    acr_password: str = Field(
        default="urn:dongguan:idp:acr:pwd",
        description="acr value for a sign-in with a password (or another single factor).",
    )
    acr_mfa: str = Field(
        default="urn:dongguan:idp:acr:mfa",
        description="acr value for a sign-in with a password and a one-time code.",
    )
    acr_level_prefix: str = Field(
        default="urn:dongguan:idp:acr:level",
        pattern=r"^[\x21-\x7e]{1,190}$",
        description="acr values for real-name levels are this prefix and the level (2-5): "
        "asked for in acr_values, the user must have at least that level.",
    )
    ida_trust_framework: str = Field(
        default="cn_gd_kexin",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="verified_claims.verification.trust_framework: the rules the levels follow.",
    )

    # -- real-name verification
    registry_level_valid_days: int = Field(
        default=3 * 365,
        ge=1,
        le=100 * 365,
        description="How long a level reached against the population registry lasts.",
    )
    registry_checks_per_account_per_day: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Registry checks an account may ask for in 24 hours (the form is no oracle).",
    )
    sms_level_valid_days: int = Field(
        default=365,
        ge=1,
        le=100 * 365,
        description="How long level 2 (self-declared, phone checked) lasts.",
    )
    face_level_valid_days: int = Field(
        default=3 * 365,
        ge=1,
        le=100 * 365,
        description="How long level 4 (face check against the registry photo) lasts.",
    )
    counter_level_valid_days: int = Field(
        default=5 * 365,
        ge=1,
        le=100 * 365,
        description="How long level 5 from a service counter check lasts.",
    )
    sms_code_lifetime_seconds: int = Field(
        default=600, ge=60, le=600, description="How long a one-time code sent by SMS is valid."
    )
    sms_codes_per_phone_per_hour: int = Field(
        default=5, ge=1, le=1000, description="One-time codes sent to one phone number per hour."
    )
    sms_codes_per_account_per_day: int = Field(
        default=10, ge=1, le=1000, description="One-time codes one account may ask for per day."
    )
    counter_checks_per_staff_per_hour: int = Field(
        default=60,
        ge=1,
        le=10_000,
        description="Counter checks (level 5) one member of staff may record per hour.",
    )
    staff_posts_per_account_per_hour: int = Field(
        default=300,
        ge=1,
        le=100_000,
        description="Forms one account may send to the staff pages per hour (any outcome).",
    )
    face_checks_per_account_per_day: int = Field(
        default=5, ge=1, le=1000, description="Face checks an account may ask for in 24 hours."
    )

    # -- remote services: registry, face check, SMS gateway (design.md section 5)
    registry_adapter: Literal["local", "http"] = Field(
        default="local",
        description="Who answers registry checks: the local copy (`idp registry import`, "
        "embedded mode and tests) or the registry service over HTTP.",
    )
    registry_url: str | None = Field(
        default=None, description="Base URL of the registry service (registry_adapter=http)."
    )
    registry_hmac_key: SecretStr | None = Field(
        default=None, description="Shared key that signs each request to the registry service."
    )
    registry_client_cert: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS to the registry."
    )
    registry_client_key: Path | None = Field(
        default=None, description="PEM private key of registry_client_cert."
    )
    registry_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle that the registry's server certificate must chain to.",
    )
    registry_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    registry_retries: int = Field(
        default=2, ge=0, le=5, description="Retries after a failed attempt."
    )
    face_adapter: Literal["development", "http"] = Field(
        default="development",
        description="Who answers face checks: the deterministic development adapter or the "
        "face-verification service over HTTP.",
    )
    face_url: str | None = Field(
        default=None, description="Base URL of the face-verification service."
    )
    face_hmac_key: SecretStr | None = Field(
        default=None, description="Shared key that signs each request to the face service."
    )
    face_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    sms_gateway: Literal["development", "http"] = Field(
        default="development",
        description="Who sends SMS: the development gateway (writes messages to "
        "<data_dir>/sms.log) or an SMS gateway over HTTP.",
    )
    sms_gateway_url: str | None = Field(default=None, description="URL of the SMS gateway.")
    sms_gateway_hmac_key: SecretStr | None = Field(
        default=None, description="Shared key that signs each request to the SMS gateway."
    )
    remote_breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive failures after which calls to a remote service stop for a while.",
    )
    remote_breaker_reset_seconds: int = Field(
        default=30, ge=1, le=3600, description="How long calls stay stopped before one is tried."
    )

    # -- lists: [[local_cas]], [[upstream_providers]], [[peers]] (config.sections)
    local_cas: tuple[LocalCaSettings, ...] = Field(
        default=(), description="The city's certificate authorities (issue 11)."
    )
    upstream_providers: tuple[UpstreamProviderSettings, ...] = Field(
        default=(), description="OpenID providers users may sign in with (issue 13)."
    )
    peers: tuple[PeerSettings, ...] = Field(
        default=(), description="Identity platforms kept in step with this one (issue 13)."
    )

    @field_validator("issuer")
    @classmethod
    def _issuer_is_a_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://id.example.gov.cn")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith(("postgresql://", "postgres://")):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite://", "postgresql+psycopg://")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return value

    @field_validator("redis_url")
    @classmethod
    def _supported_redis(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parse_redis_url(value)
        return value

    @field_validator("registry_url", "face_url", "sms_gateway_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return http_url(value)

    @field_validator("client_cert_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        # no underscores: WSGI servers map "-" and "_" to the same environ key, so a
        # client's X_SSL_Client_Cert could pass for the proxy's X-SSL-Client-Cert
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be a header name of letters, digits and single hyphens")
        return value

    @field_validator("client_cert_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("client_cert_proxies")
    @classmethod
    def _proxy_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for item in value:
            try:
                network = ipaddress.ip_network(item)
            except ValueError:
                try:
                    loose = ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item!r} is not an IP address or a CIDR network "
                        "(e.g. 10.0.0.5 or 10.0.0.0/24)"
                    ) from None
                raise ValueError(f"{item!r} has host bits set (did you mean {loose}?)") from None
            networks.append(str(network))
        return tuple(networks)

    @field_validator("secret_key")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (try: openssl rand -hex 32)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.session_idle_timeout > self.session_max_age:
            raise ValueError(
                "session_idle_timeout: must not exceed session_max_age "
                f"({self.session_idle_timeout} > {self.session_max_age})"
            )
        weak = (
            self.argon2_memory_kib < OWASP_MIN_ARGON2_MEMORY_KIB
            or self.argon2_time_cost < OWASP_MIN_ARGON2_TIME_COST
        )
        if weak and not self.allow_weak_password_hashing:
            raise ValueError(
                "argon2_memory_kib: Argon2id below OWASP's minimum "
                f"(m={OWASP_MIN_ARGON2_MEMORY_KIB} KiB, t={OWASP_MIN_ARGON2_TIME_COST})"
            )
        if self.refresh_token_idle_lifetime > self.refresh_token_max_lifetime:
            raise ValueError(
                "refresh_token_idle_lifetime: must not exceed refresh_token_max_lifetime"
            )
        for service, adapter in (
            ("registry", self.registry_adapter),
            ("face", self.face_adapter),
            ("sms_gateway", self.sms_gateway),
        ):
            url_field = "sms_gateway_url" if service == "sms_gateway" else f"{service}_url"
            if adapter == "http" and not getattr(self, url_field):
                raise ValueError(f"{url_field}: required when {service} uses http")
        if (self.registry_client_cert is None) != (self.registry_client_key is None):
            raise ValueError("registry_client_cert: set together with registry_client_key")
        if self.login_backoff_base_seconds > self.login_backoff_max_seconds:
            raise ValueError(
                "login_backoff_base_seconds: must not exceed login_backoff_max_seconds"
            )
        if self.client_cert_proxies and self.trusted_proxy_count == 0:
            raise ValueError(
                "client_cert_proxies: a proxy that forwards client certificates must also "
                "be counted in trusted_proxy_count"
            )
        check_unique("local_cas", self.local_cas, "name")
        check_unique("upstream_providers", self.upstream_providers, "name")
        check_unique("upstream_providers", self.upstream_providers, "issuer")
        check_unique("peers", self.peers, "name")
        check_unique("peers", self.peers, "issuer")
        return self

    # -- derived values

    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'idp.sqlite3').resolve()}"

    @property
    def uses_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def is_https(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def longest_token_lifetime(self) -> int:
        """How long a signing key must stay published after it stops signing."""
        return max(self.access_token_lifetime, self.id_token_lifetime, 120)

    def redacted(self) -> dict[str, Any]:
        """Every setting as JSON values, safe to print or log: secrets (``SecretStr``,
        in the sections too) as ``**********``, passwords in URLs replaced."""
        redacted: dict[str, Any] = _redact_urls(self.model_dump(mode="json"))
        return redacted


def _redact_urls(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {name: _redact_urls(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_redact_urls(item, key) for item in value]
    if isinstance(value, str) and key.endswith(("_url", "_urls")):
        return redact_url(value)
    return value


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(
    environ: Mapping[str, str], *, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build settings from a TOML file (``IDP_CONFIG``), the environment and overrides."""
    values: dict[str, Any] = {}
    config_file = environ.get(CONFIG_FILE_VARIABLE)
    if config_file:
        values.update(_read_toml(Path(config_file)))
    fields = Settings.model_fields
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_VARIABLE:
            continue
        if name.startswith(_IGNORED_PREFIXES):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        if field not in fields:
            raise SettingsError(f"unknown setting {name} (see the settings table in README.md)")
        values[field] = _json_list(name, field, raw) if field in SECTIONS else raw
    values.update(overrides or {})
    return build_settings(values)


def build_settings(values: Mapping[str, Any]) -> Settings:
    """Validate a mapping of setting names to values; errors name the setting."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _json_list(name: str, field: str, raw: str) -> Any:
    """A list section given in the environment: a JSON array that replaces the file's."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        # the message names the position only, never the text (it may hold secrets)
        raise SettingsError(
            f"invalid setting {name} ({field}): not valid JSON "
            f"({exc.msg}, line {exc.lineno} column {exc.colno}); '[]' is an empty list"
        ) from None
    if not isinstance(value, list):
        raise SettingsError(
            f"invalid setting {name} ({field}): must be a JSON array of objects, "
            f"like the [[{field}]] tables of the TOML file"
        )
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read {CONFIG_FILE_VARIABLE}={path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{CONFIG_FILE_VARIABLE}={path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r} in {path}")
    return data


# "field: message" or "field[1].key: message" at the start of a model-level error
_PATH_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*(?:\[[0-9]+\])?(?:\.[a-z_][a-z0-9_]*)*): ")
_SCALARS = (str, int, float, bool, type(None))


def _path(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as the operator writes it: ``local_cas[1].ocsp_url``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path


def _describe(exc: ValidationError) -> str:
    lines = []
    errors = exc.errors()
    for error in errors:
        loc = error["loc"]
        if error["type"] == "too_short" and any(
            other["loc"][: len(loc)] == loc and len(other["loc"]) > len(loc) for other in errors
        ):
            continue  # the list is short because an item of it is wrong: that item says why
        path = _path(loc)
        message = error["msg"].removeprefix("Value error, ")
        model_level = not loc or isinstance(loc[-1], int)
        if error["type"] == "value_error" and model_level:
            # model-level errors name their field as "field: message"
            match = _PATH_PREFIX.match(message)
            if match or not loc:
                field, _, message = message.partition(": ")
                path = f"{path}.{field}" if path else field
        message = _plain_message(error["type"], loc, message)
        top = path.split(".", 1)[0].split("[", 1)[0]
        value = error.get("input")
        hidden = any(word in path for word in ("secret", "token", "key"))
        shown = "<hidden>" if hidden else repr(value)
        if isinstance(value, str) and not hidden:
            # a URL that failed to parse may have its password anywhere before the last @
            shown = repr(re.sub(r"//.*@", "//***@", value))
        show = loc and isinstance(value, _SCALARS) and error["type"] != "extra_forbidden"
        name = f"{env_name(top)} ({path})" if top in Settings.model_fields else path
        suffix = f" (got {shown})" if show else ""
        lines.append(f"invalid setting {name}: {message}{suffix}")
    return "; ".join(lines)


def _plain_message(kind: str, loc: tuple[int | str, ...], message: str) -> str:
    if kind == "extra_forbidden":
        return "unknown key (see the settings table in README.md)"
    if kind == "missing":
        return "required"
    if kind == "too_short":
        return "must not be empty"
    if len(loc) == 1 and loc[0] in SECTIONS and kind in {"tuple_type", "list_type"}:
        field = str(loc[0])
        return (
            f"must be a list of tables: [[{field}]] in the TOML file, "
            f"a JSON array in {env_name(field)}"
        )
    if len(loc) == 2 and loc[0] in SECTIONS and kind == "model_type":
        return "must be a table"
    return message


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not even a URL (e.g. an unclosed "["): hide all credentials
        return re.sub(r"//.*@", "//***@", url)
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc[-1]}", parts.path, parts.query, ""))


REDIS_URL_FORMS = (
    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... or unix://PATH (one server); "
    "redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB] "
    "(Sentinel, port 26379 by default); "
    "redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...] (Cluster, port 6379)"
)
_SENTINEL_SCHEME = "redis+sentinel"
_CLUSTER_SCHEME = "redis+cluster"
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?$")


@dataclasses.dataclass(frozen=True)
class RedisTopology:
    """What ``IDP_REDIS_URL`` names: one server (``redis://``, parsed by redis-py), the
    primary of a Sentinel-monitored service, or a Cluster. ``hosts`` are the
    sentinels or the cluster's startup nodes; the credentials are those of the Redis
    servers that hold the data (the sentinels are asked without them)."""

    kind: Literal["single", "sentinel", "cluster"]
    hosts: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisTopology:
    """Read an ``IDP_REDIS_URL``; ``ValueError`` (never naming the password) if bad."""
    scheme, _, rest = url.partition("://")
    if scheme in {"redis", "rediss", "unix"} and rest:
        return RedisTopology("single")
    if scheme not in {_SENTINEL_SCHEME, _CLUSTER_SCHEME} or not rest:
        raise ValueError(f"must be one of {REDIS_URL_FORMS}")
    netloc, _, path = rest.partition("/")
    if "?" in rest or "#" in rest:
        raise ValueError(f"{scheme}:// takes no query or fragment")
    credentials, at, host_list = netloc.rpartition("@")
    username, password = None, None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    default_port = 26379 if scheme == _SENTINEL_SCHEME else 6379
    hosts = tuple(_host_and_port(item, default_port) for item in host_list.split(","))
    if scheme == _CLUSTER_SCHEME:
        if path not in {"", "0"}:
            raise ValueError("redis+cluster:// has database 0 only (no /SERVICE or /DB)")
        return RedisTopology("cluster", hosts, username=username, password=password)
    service, _, db = path.partition("/")
    if not _SERVICE_NAME.match(service):
        raise ValueError("redis+sentinel:// needs the service name: .../SERVICE[/DB]")
    if db and not (db.isdigit() and int(db) < 10_000):
        raise ValueError("redis+sentinel://.../SERVICE/DB: DB must be a number")
    return RedisTopology(
        "sentinel", hosts, service, int(db or 0), username=username, password=password
    )


def _host_and_port(item: str, default_port: int) -> tuple[str, int]:
    match = _HOST.match(item)
    port = int(match.group(2) or default_port) if match else 0
    if match is None or not 0 < port < 65536:
        raise ValueError("bad host list: HOST[:PORT], separated by commas")
    return match.group(1).strip("[]"), port
