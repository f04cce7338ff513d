from __future__ import annotations

import threading

from flask import Flask
from sqlalchemy import delete, select, text, update

from idp.core.audit.models import AuditEvent
from idp.core.audit.services import AuditContext, AuditLog, chain_mac
from idp.core.runtime import Runtime, audit_log, db


def _record(app: Flask, count: int) -> None:
    with app.app_context():
        log = audit_log("test")
        for index in range(count):
            log.record("test.event", subject=f"user:{index}", details={"n": index})
        db().commit()


def _verify(app: Flask) -> list[str]:
    with app.app_context():
        return audit_log("test").verify(batch=3).problems


def test_an_untouched_chain_verifies(app: Flask) -> None:
    _record(app, 7)
    with app.app_context():
        report = audit_log("test").verify(batch=3)
    assert report.ok
    assert report.checked == 7


def test_an_edited_event_is_detected(app: Flask) -> None:
    _record(app, 5)
    with app.app_context():
        db().execute(update(AuditEvent).where(AuditEvent.seq == 3).values(outcome="failure"))
        db().commit()
    assert _verify(app) == ["event 3 (test.event) was altered"]


def test_a_deleted_event_is_detected(app: Flask) -> None:
    _record(app, 5)
    with app.app_context():
        db().execute(delete(AuditEvent).where(AuditEvent.seq == 2))
        db().commit()
    problems = _verify(app)
    assert "events 2..2 are missing" in problems


def test_deleting_the_newest_events_is_detected(app: Flask) -> None:
    _record(app, 5)
    with app.app_context():
        db().execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
        db().commit()
    problems = _verify(app)
    assert any("newest events were deleted" in problem for problem in problems)


def test_a_chain_rebuilt_without_the_key_is_detected(app: Flask) -> None:
    """Someone with database access only recomputes MACs with a guessed key."""
    _record(app, 3)
    with app.app_context():
        rows = db().scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        previous = "0" * 64
        for row in rows:
            row.details = {"n": 99}
            row.mac = chain_mac(b"guessed key", previous, row)
            previous = row.mac
        db().execute(text("UPDATE audit_head SET mac = :mac"), {"mac": previous})
        db().commit()
    assert len(_verify(app)) >= 3


def test_concurrent_appends_keep_one_unbroken_chain(app: Flask) -> None:
    def append() -> None:
        with app.app_context():
            rt = Runtime.of()
            for _ in range(10):
                with rt.database.session() as session:
                    AuditLog(session, rt.keys.secrets, rt.clock, _ctx()).record("race")
                    session.commit()

    threads = [threading.Thread(target=append) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with app.app_context():
        report = audit_log("test").verify()
    assert report.ok, report.problems
    assert report.checked == 40


def _ctx() -> AuditContext:
    return AuditContext(actor="thread")
