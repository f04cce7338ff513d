"""The sign-in flow and its pages: a first factor, then a second one when the account
has one (``flow``), over the methods packages register (``idp.core.signin``)."""

from __future__ import annotations

from flask import Flask

from idp.core.signin import SignInMethods
from idp.login import views
from idp.login.flow import LoginFlow


def init_app(app: Flask) -> SignInMethods:
    """Install the app's sign-in method registry (before the packages that register
    methods into it) and the sign-in pages."""
    methods = SignInMethods(LoginFlow())
    methods.install(app)
    views.init_app(app)
    return methods
