"""What other packages tell the sign-in pages.

``SignInPages.service_name`` names the service a user is signing in to, from the
``client_id`` an authorization request passed to ``/login``; the provider
(``idp.oauth.init_app``) fills it in, so the sign-in pages need not know clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from idp.core.runtime import Component

ServiceName = Callable[[str], str | None]


def _unnamed(client_id: str) -> str | None:  # noqa: ARG001 - a ServiceName
    return None


class SignInPages(Component):
    extension: ClassVar[str] = "idp.login"

    def __init__(self) -> None:
        self.service_name: ServiceName = _unnamed
