"""The upstream package's app-lifetime parts (the settings upstreams' metadata cache),
and its services for one request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from sqlalchemy import select

from accounts.container import Accounts
from federation.upstream.client import (
    TIMEOUTS,
    ClientKey,
    ProviderMetadata,
    RelyingParty,
    Timeouts,
    UpstreamConfig,
    fetch_metadata,
)
from federation.upstream.models import Upstream
from federation.upstream.services import (
    LinkService,
    MetadataCache,
    UpstreamRegistry,
    redirect_uri,
)
from idp.core.db import database_lost, error_summary
from idp.core.runtime import Component, Runtime, audit_log, db

log = logging.getLogger(__name__)
JWKS_PATH = "/jwks.json"  # the provider's (idp.oauth.endpoints)

JWKS_REFRESH_SECONDS = 10
_JWKS_REFRESHED = "fed:jwks-refreshed:"


class Upstreams(Component):
    extension: ClassVar[str] = "federation.upstream"

    def __init__(self, core: Runtime, *, client_key: Callable[[], ClientKey] | None = None) -> None:
        self.core = core
        # the city's key for private_key_jwt at an upstream's token endpoint (the
        # provider's active signing key, published at its JWKS URI)
        self.client_key = client_key
        self.cache = MetadataCache()
        # (connect, read) seconds of every request to an upstream; tests shorten them
        self.timeouts: Timeouts = TIMEOUTS

    def _fetch(self, issuer: str) -> ProviderMetadata:
        return fetch_metadata(issuer, timeouts=self.timeouts)

    def registry(self, actor: str | None = None) -> UpstreamRegistry:
        return UpstreamRegistry(
            db(),
            self.core.keys.cipher,
            audit_log(actor),
            self.core.clock,
            configured=self.core.settings.upstream_providers,
            cache=self.cache,
            fetch=self._fetch,
        )

    def links(self, actor: str | None = None) -> LinkService:
        accounts = Accounts.of()
        return LinkService(
            db(),
            accounts.account_service(actor),
            accounts.realname_service(actor),
            audit_log(actor),
            self.core.clock,
        )

    def labels(self) -> dict[str, str]:
        """Each upstream's name and what people see it called (its display name, else
        its name), for the sign-in and account pages. They must draw while the
        database is down: then only the settings' upstreams are listed (the stored
        ones could not sign anyone in before it is back)."""
        configured = {
            entry.name: entry.display_name or entry.name
            for entry in self.core.settings.upstream_providers
        }
        try:
            rows = db().execute(
                select(Upstream.name, Upstream.display_name).order_by(Upstream.name)
            )
            stored = {name: shown or name for name, shown in rows}
        except Exception as exc:
            if not database_lost(exc):
                raise
            log.warning("upstream providers not listed: %s", error_summary(exc))
            try:
                db().rollback()
            except Exception as again:  # noqa: BLE001 - the connection is gone already
                log.debug("rollback after a lost database: %s", error_summary(again))
            return configured
        return configured | stored

    def redirect_uri(self, name: str) -> str:
        return redirect_uri(self.core.settings.issuer, name)

    def jwks_uri(self) -> str:
        """Where an upstream fetches the keys of the city's client assertions."""
        return self.core.settings.issuer.rstrip("/") + JWKS_PATH

    def logged_out_uri(self, name: str) -> str:
        """The ``post_logout_redirect_uri`` to register at the upstream."""
        return f"{self.core.settings.issuer}/federation/{name}/logged-out"

    def backchannel_logout_uri(self, name: str) -> str:
        """The ``backchannel_logout_uri`` to register at the upstream."""
        return f"{self.core.settings.issuer}/federation/{name}/backchannel-logout"

    def _refresh_jwks(self, registry: UpstreamRegistry, config: UpstreamConfig) -> dict[str, Any]:
        """An unknown ``kid`` fetches the key set again, at most once per
        ``JWKS_REFRESH_SECONDS`` per upstream: tokens naming made-up keys (the back-channel
        logout endpoint takes them from anyone) must not turn into a flood of requests
        to the upstream."""
        if not self.core.store.add(_JWKS_REFRESHED + config.name, b"1", JWKS_REFRESH_SECONDS):
            return registry.metadata(config).jwks
        return registry.refresh_jwks(config)

    def relying_party(self, config: UpstreamConfig) -> RelyingParty:
        """``UpstreamRefused`` when its metadata cannot be had."""
        registry = self.registry(actor="web")
        return RelyingParty(
            config,
            registry.metadata(config),
            redirect_uri=self.redirect_uri(config.name),
            refresh_jwks=lambda: self._refresh_jwks(registry, config),
            now=lambda: int(self.core.clock.now().timestamp()),
            timeouts=self.timeouts,
            client_key=self.client_key,
        )
