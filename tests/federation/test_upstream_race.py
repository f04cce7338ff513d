"""The first sign-in race: two first sign-ins of one upstream subject at the same time
(two tabs, or two workers) leave one account, linked, and both end up signed in to it;
no account without a link is left behind.

The interleaving is forced, not hoped for: each side waits at a barrier once it has
made its account, so both have passed the "no link yet" check before either links.
Both back ends (SQLite and PostgreSQL, whose unique index makes the second insert
wait for the first transaction)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from accounts.container import Accounts
from federation.upstream.client import UpstreamIdentity
from federation.upstream.container import Upstreams
from federation.upstream.services import LinkService, UpstreamError
from idp.core.audit.models import AuditEvent
from idp.core.runtime import db
from tests.federation.fake_upstream import FakeUpstream
from tests.federation.test_upstream_signin import (
    NAME,
    PERSON,
    add_fake,
    confirmed_holder,
    level_of,
    links,
    round_trip,
    signed_in_as,
)
from tests.support import AppFactory, csrf_token, text

SUBJECT = "province-user-1"
WAIT = 20.0  # seconds a side waits for the other at the barrier


def accounts_without_a_way_in(app: Flask) -> int:
    """Accounts that have neither a password nor an upstream link (orphans)."""
    with app.app_context():
        users = Accounts.of().account_service().list()
        linked = {link.user_id for link in links(app)}
        return sum(1 for u in users if u.password_hash is None and u.id not in linked)


def user_count(app: Flask) -> int:
    with app.app_context():
        return len(Accounts.of().account_service().list())


@pytest.fixture
def both_made_accounts(monkeypatch: pytest.MonkeyPatch) -> threading.Barrier:
    """Each first sign-in waits, its new account made, until the other has made its
    own."""
    barrier = threading.Barrier(2, timeout=WAIT)
    original = LinkService._new_user

    def new_user(self: LinkService, config: Any) -> Any:
        user = original(self, config)
        barrier.wait()
        return user

    monkeypatch.setattr(LinkService, "_new_user", new_user)
    return barrier


def race(*sides: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * len(sides)
    errors: list[BaseException] = []

    def run(index: int, side: Callable[[], Any]) -> None:
        try:
            results[index] = side()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(sides)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


def test_two_workers_creating_the_first_account_leave_one_linked_account(
    make_app: AppFactory,
    fake: FakeUpstream,
    both_made_accounts: threading.Barrier,
) -> None:
    workers = [make_app(), make_app()]
    add_fake(workers[0], fake)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    identity = UpstreamIdentity(issuer=fake.url, subject=SUBJECT, claims=dict(fake.claims))
    before = user_count(workers[0])

    def first_sign_in(worker: Flask) -> int:
        with worker.test_request_context():
            service = Upstreams.of().links(actor="web")
            config = Upstreams.of().registry().get("province")
            assert config is not None
            try:
                user = service.create_account(config, identity, number_taken=False)
            except UpstreamError:
                # the other worker linked it first: its account (as the page does)
                winner = service.map(config, identity).user
                assert winner is not None
                return winner.id
            return user.id

    ids = race(*(lambda w=w: first_sign_in(w) for w in workers))
    assert ids[0] == ids[1]
    [link] = links(workers[0])
    assert link.user_id == ids[0]
    assert user_count(workers[0]) == before + 1
    assert accounts_without_a_way_in(workers[0]) == 0
    assert level_of(workers[0], ids[0]) == 3  # the winner's verification stands
    with workers[0].app_context():
        reasons = [
            e.details.get("reason")
            for e in db().scalars(select(AuditEvent).where(AuditEvent.event == "federation.link"))
            if e.outcome == "failure"
        ]
    assert reasons == ["linked_meanwhile"]


def at_the_choice(client: FlaskClient, fake: FakeUpstream) -> str:
    """A finished round trip that waits at /federation/new; its page's CSRF token."""
    choice = round_trip(client, fake)
    assert choice.location.startswith("/federation/new"), text(choice)
    return csrf_token(text(client.get(choice.location)))


def test_two_tabs_choosing_a_new_account_at_once_sign_in_to_one_account(
    app: Flask,
    fake: FakeUpstream,
    both_made_accounts: threading.Barrier,
) -> None:
    add_fake(app, fake)
    Upstreams.of(app).timeouts = (1.0, 1.0)
    tabs = [app.test_client(), app.test_client()]
    tokens = [at_the_choice(tab, fake) for tab in tabs]
    before = user_count(app)

    def choose(tab: FlaskClient, token: str) -> TestResponse:
        return tab.post("/federation/new", data={"csrf_token": token})

    answers = race(*(lambda t=t, k=k: choose(t, k) for t, k in zip(tabs, tokens, strict=True)))
    assert [answer.location for answer in answers] == ["/account", "/account"]
    [link] = links(app)
    with app.app_context():
        owner = Accounts.of().account_service().get(link.user_id)
        assert owner is not None
        username = owner.username
    for tab in tabs:
        page = signed_in_as(tab)
        assert page is not None
        assert username in page
    assert user_count(app) == before + 1
    assert accounts_without_a_way_in(app) == 0


def test_a_link_made_meanwhile_to_the_same_account_is_no_error(
    make_app: AppFactory,
    fake: FakeUpstream,
) -> None:
    """Rule 2 twice at once: both callbacks link the holder of the number; the second
    insert loses to the first and signs in to the same account."""
    workers = [make_app(), make_app()]
    add_fake(workers[0], fake)
    holder = confirmed_holder(workers[0], level=3)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    identity = UpstreamIdentity(issuer=fake.url, subject=SUBJECT, claims=dict(fake.claims))
    # each side finding no link waits for the other: both pass rule 1, then both pass
    # link's own check (the barrier is reused), so both insert
    barrier = threading.Barrier(2, timeout=WAIT)
    original = LinkService.find

    def find(self: LinkService, issuer: str, subject: str) -> Any:
        found = original(self, issuer, subject)
        if found is None:
            barrier.wait()
        return found

    def sign_in(worker: Flask) -> int | None:
        with worker.test_request_context():
            config = Upstreams.of().registry().get("province")
            assert config is not None
            outcome = Upstreams.of().links(actor="web").map(config, identity)
            return outcome.user.id if outcome.user is not None else None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LinkService, "find", find)
        ids = race(*(lambda w=w: sign_in(w) for w in workers))
    assert ids == [holder, holder]
    assert len(links(workers[0])) == 1
    with workers[0].app_context():
        linked = db().scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.event == "federation.link", AuditEvent.outcome == "success")
        )
    assert linked == 1  # the link made once, audited once
