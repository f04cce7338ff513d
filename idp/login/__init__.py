"""The sign-in flow: password, then a one-time code when the account has one."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from accounts.signals import account_disabled
    from idp.login import auth, views

    views.init_app(app)
    account_disabled.connect(auth.end_disabled_accounts_sessions, weak=False)
