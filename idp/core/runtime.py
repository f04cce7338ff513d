"""What one app instance is wired with, and per-request access to it.

``create_app`` builds one ``Runtime`` and keeps it in ``app.extensions``; nothing is a
module-level singleton, so two apps in one process (tests, a peer instance) never share
state.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy.orm import Session

from config import Settings
from idp.audit.services import AuditContext, AuditLog
from idp.core.clock import Clock
from idp.core.db import Database
from idp.core.keys import KeyMaterial
from idp.core.store import Store

EXTENSION = "idp.runtime"


@dataclass
class Runtime:
    settings: Settings
    database: Database
    store: Store
    keys: KeyMaterial
    clock: Clock


def runtime() -> Runtime:
    value: Runtime = current_app.extensions[EXTENSION]
    return value


def db() -> Session:
    """The request's (or CLI command's) database session, opened on first use."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = runtime().database.sessions()
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
    rt = runtime()
    return AuditLog(db(), rt.keys.secrets, rt.clock, audit_context(actor))


def init_app(app: Flask, rt: Runtime) -> None:
    app.extensions[EXTENSION] = rt
    app.teardown_appcontext(close_db)
