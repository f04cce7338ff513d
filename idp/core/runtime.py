"""What one app instance is wired with, and per-request access to it.

Every package keeps its app-lifetime services in one ``Component`` (a typed container)
stored on the app under the package's key, and reached one way: ``Runtime.of()``,
``Accounts.of()``, ``OAuthRuntime.of()`` (``of(app)`` outside a request). ``create_app``
builds them in a fixed order; nothing is a module-level singleton, so two apps in one
process (tests, a peer instance) never share state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy.orm import Session

from config import Settings
from idp.core.audit.services import AuditContext, AuditLog
from idp.core.clock import Clock
from idp.core.db import Database
from idp.core.keys import KeyMaterial
from idp.core.store import Store


class Component:
    """One package's app-lifetime services, kept on the app under ``extension``."""

    extension: ClassVar[str]

    def install(self, app: Flask) -> None:
        if self.extension in app.extensions:
            raise RuntimeError(f"{self.extension} is already installed on this app")
        app.extensions[self.extension] = self

    @classmethod
    def of(cls, app: Flask | None = None) -> Self:
        """The app's instance (the current app's without an argument)."""
        value = (app or current_app).extensions[cls.extension]
        assert isinstance(value, cls)
        return value

    @classmethod
    def installed(cls, app: Flask) -> bool:
        return cls.extension in app.extensions


@dataclass
class Runtime(Component):
    """What every package is built on: settings, database, store, keys, clock."""

    extension: ClassVar[str] = "idp.runtime"

    settings: Settings
    database: Database
    store: Store
    keys: KeyMaterial
    clock: Clock


def db() -> Session:
    """The request's (or CLI command's) database session, opened on first use."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = Runtime.of().database.sessions()
        g.db_session = session
    return session


def close_db(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


def audit_context(actor: str | None = None) -> AuditContext:
    if has_request_context():
        return AuditContext(
            client_ip=request.remote_addr, request_id=g.get("request_id"), actor=actor
        )
    return AuditContext(actor=actor or "cli")


def audit_log(actor: str | None = None) -> AuditLog:
    rt = Runtime.of()
    return AuditLog(db(), rt.keys.secrets, rt.clock, audit_context(actor))


def init_app(app: Flask, rt: Runtime) -> None:
    rt.install(app)
    app.teardown_appcontext(close_db)
