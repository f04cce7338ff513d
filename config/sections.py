"""The list sections of the settings: local CAs, upstream providers, peers.

In the TOML file each is an array of tables (``[[local_cas]]``, ``[[upstream_providers]]``,
``[[peers]]``); in the environment, a JSON array in one variable (``IDP_LOCAL_CAS``, ...)
that replaces the file's list (decision 26). Every section is a frozen model that refuses
unknown keys. Pairs that the command line takes as ``A=B`` (``--policy-map``,
``--level-map``) and identity rules (``--identity KIND:SOURCE``) are written as the same
strings, or as tables with the keys of their models.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from config.fields import (
    DisplayName,
    FilePath,
    HttpUrl,
    IssuerUrl,
    Oid,
    Scope,
    SectionName,
    Token,
    oid,
)

RevocationMode = Literal["off", "soft", "hard", "require"]
IdentityKind = Literal["person", "organisation"]
IdentifierType = Literal["resident_id", "permit", "foreigner_id", "uscc"]
TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
SUBJECT_ATTRIBUTES = ("serialNumber", "organizationIdentifier", "CN")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _split_pair(value: Any, keys: tuple[str, str], *, last: bool, usage: str) -> Any:
    """``"A=B"`` as ``{keys[0]: A, keys[1]: B}``; other values are left to the model."""
    if not isinstance(value, str):
        return value
    left, equals, right = value.rpartition("=") if last else value.partition("=")
    if not equals or not left or not right:
        raise ValueError(f"must be {usage} or a table with keys {keys[0]} and {keys[1]}")
    return {keys[0]: left, keys[1]: right}


def _refuse_duplicates(items: Iterable[object], what: str) -> None:
    seen: set[object] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{what} {item!r} is given twice")
        seen.add(item)


class PolicyMapping(_Section):
    """A local CA's policy OID and the platform policy OID it maps to (the cross-certificate's
    ``policyMappings``: issuerDomainPolicy = ``platform``, subjectDomainPolicy = ``local``)."""

    local: Oid
    platform: Oid

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return _split_pair(value, ("local", "platform"), last=False, usage="LOCAL_OID=PLATFORM_OID")


class IdentityRule(_Section):
    """Where a certificate carries the identity number: ``kind`` ``person`` or
    ``organisation``; ``source`` ``ext:OID`` or ``subject:serialNumber`` /
    ``subject:organizationIdentifier`` / ``subject:CN``."""

    kind: IdentityKind
    source: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        kind, colon, source = value.partition(":")
        if not colon:
            raise ValueError("must be KIND:SOURCE, e.g. person:subject:serialNumber")
        return {"kind": kind, "source": source}

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        where, _, what = value.partition(":")
        if where == "subject" and what in SUBJECT_ATTRIBUTES:
            return value
        try:
            if where == "ext":
                return f"ext:{oid(what)}"
        except ValueError:
            pass
        subjects = ", ".join(f"subject:{name}" for name in SUBJECT_ATTRIBUTES)
        raise ValueError(f"must be ext:OID (e.g. ext:1.2.156.10260.4.1.1) or one of {subjects}")

    @property
    def extension_oid(self) -> str | None:
        where, _, what = self.source.partition(":")
        return what if where == "ext" else None

    @property
    def subject_attribute(self) -> str | None:
        where, _, what = self.source.partition(":")
        return what if where == "subject" else None


class LocalCaSettings(_Section):
    """One of the city's certificate authorities (issue 11: ``idp pki import-ca``)."""

    name: SectionName
    root: FilePath = Field(description="The CA's root certificate (PEM or DER).")
    intermediates: tuple[FilePath, ...] = ()
    policy_map: tuple[PolicyMapping, ...] = Field(min_length=1)
    identity_rules: tuple[IdentityRule, ...] = Field(
        default=(), description="Tried in order; empty: the platform's default rules."
    )
    crl_urls: tuple[HttpUrl, ...] = ()
    ocsp_url: HttpUrl | None = None
    revocation: RevocationMode = "hard"

    @model_validator(mode="after")
    def _no_repeats(self) -> LocalCaSettings:
        try:
            _refuse_duplicates(((m.local, m.platform) for m in self.policy_map), "mapping")
        except ValueError as exc:
            raise ValueError(f"policy_map: {exc}") from None
        try:
            _refuse_duplicates(self.crl_urls, "URL")
        except ValueError as exc:
            raise ValueError(f"crl_urls: {exc}") from None
        return self


class LevelMapping(_Section):
    """An upstream's level (an ``acr`` value or a claim's value) and the real-name level
    (1-5) it counts as here. In the string form ``THEIRS=OURS`` the split is at the last
    ``=`` (THEIRS may be an acr URI)."""

    theirs: Token
    ours: int = Field(ge=1, le=5)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return _split_pair(value, ("theirs", "ours"), last=True, usage="THEIRS=OURS")


class UpstreamProviderSettings(_Section):
    """An OpenID provider users may sign in with (issue 13: ``idp federation add-upstream``)."""

    name: SectionName
    display_name: DisplayName | None = None  # on the sign-in page; else the name
    issuer: IssuerUrl
    client_id: Token
    client_secret: SecretStr | None = None
    token_auth_method: TokenAuthMethod = "client_secret_basic"
    scopes: tuple[Scope, ...] = ("openid",)
    identity_claim: Token | None = None
    identity_type: IdentifierType | None = None
    level_claim: Token | None = None
    level_map: tuple[LevelMapping, ...] = ()
    link_min_level: int = Field(default=3, ge=1, le=5)

    @field_validator("scopes", mode="before")
    @classmethod
    def _space_separated(cls, value: Any) -> Any:
        return tuple(value.split()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> UpstreamProviderSettings:
        if self.token_auth_method != "private_key_jwt" and self.client_secret is None:
            raise ValueError(f"client_secret: required with {self.token_auth_method}")
        if "openid" not in self.scopes:
            raise ValueError("scopes: must include openid")
        try:
            _refuse_duplicates(self.scopes, "scope")
        except ValueError as exc:
            raise ValueError(f"scopes: {exc}") from None
        try:
            _refuse_duplicates((m.theirs for m in self.level_map), "level")
        except ValueError as exc:
            raise ValueError(f"level_map: {exc}") from None
        if self.identity_type is not None and self.identity_claim is None:
            raise ValueError("identity_type: needs identity_claim")
        return self


class PeerSettings(_Section):
    """Another identity platform kept in step with this one (issue 13: provisioning and
    Security Event Tokens)."""

    name: SectionName
    issuer: IssuerUrl = Field(description="The peer's issuer: its SETs' iss, its keys.")
    set_push_url: HttpUrl | None = Field(
        default=None, description="Where this service pushes SETs (RFC 8935)."
    )
    set_push_token: SecretStr | None = Field(
        default=None, description="Bearer token for set_push_url."
    )
    scim_base_url: HttpUrl | None = None
    scim_token: SecretStr | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PeerSettings:
        if self.set_push_token is not None and self.set_push_url is None:
            raise ValueError("set_push_token: needs set_push_url")
        if (self.scim_base_url is None) != (self.scim_token is None):
            raise ValueError("scim_token: set together with scim_base_url")
        return self


# name of the Settings field -> its section model
SECTIONS: dict[str, type[BaseModel]] = {
    "local_cas": LocalCaSettings,
    "upstream_providers": UpstreamProviderSettings,
    "peers": PeerSettings,
}


def check_unique(field: str, items: Iterable[BaseModel], attribute: str) -> None:
    """Refuse two items of a section with the same ``attribute``, naming the second."""
    first: dict[object, int] = {}
    for index, item in enumerate(items):
        value = getattr(item, attribute)
        if value in first:
            raise ValueError(
                f"{field}[{index}].{attribute}: {value!r} is already used by "
                f"{field}[{first[value]}]"
            )
        first[value] = index
