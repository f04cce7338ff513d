"""People, their credentials, their real-name level, organisations and staff.

Sub-packages, each with the same inner shape (``models``, ``services``, ``views``,
``forms``, ``cli``, ``errors`` where it applies): ``people`` (accounts, registration,
profile), ``credentials`` (passwords, TOTP, recovery codes), ``realname`` (levels 2-5,
one module per method), ``organisations``, ``staff``, ``statistics`` (the hall's);
``adapters`` (registry, face check, SMS); ``identifiers`` (document numbers and codes).
``Accounts`` (``accounts.container``) holds the app-lifetime services. ``init_app`` also registers
the password and one-time-code sign-in methods (``accounts.credentials.signin``) and
signs disabled accounts out everywhere.
"""

from __future__ import annotations

from flask import Flask

from accounts.container import AccountAdapters, Accounts
from accounts.credentials import signin as credentials_signin
from accounts.credentials import views as credentials_views
from accounts.organisations import views as organisations_views
from accounts.organisations.cli import COMMANDS as ORGANISATIONS
from accounts.people import notices, personal_views
from accounts.people import views as people_views
from accounts.people.cli import COMMANDS as PEOPLE
from accounts.people.session import end_disabled_accounts_sessions
from accounts.realname import views as realname_views
from accounts.realname.cli import COMMANDS as REALNAME
from accounts.signals import account_disabled
from accounts.staff import views as staff_views
from accounts.statistics import views as statistics_views
from accounts.statistics.cli import COMMANDS as STATISTICS
from idp.core.audit.services import audit_committed
from idp.core.runtime import Runtime
from idp.core.signin import SignInMethods

COMMANDS = (*PEOPLE, *REALNAME, *ORGANISATIONS, *STATISTICS)


def init_app(app: Flask, core: Runtime, adapters: AccountAdapters | None = None) -> Accounts:
    accounts = Accounts(core, adapters)
    accounts.install(app)
    methods = SignInMethods.of(app)
    for method in credentials_signin.methods(accounts, methods.flow.count):
        methods.register(method)
    account_disabled.connect(end_disabled_accounts_sessions, weak=False)
    audit_committed.connect(notices.on_audit_committed, weak=False)
    for views in (
        people_views,
        personal_views,
        credentials_views,
        realname_views,
        staff_views,
        organisations_views,
        statistics_views,
    ):
        views.init_app(app)
    for command in COMMANDS:
        app.cli.add_command(command)
    return accounts
