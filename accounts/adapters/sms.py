"""Sending text messages (one-time codes for real-name level 2).

``SmsGateway`` is the interface. ``FileSmsGateway`` is the development gateway: it
sends nothing and appends each message to a file (``<data_dir>/sms.log``), and start-up
says so loudly. ``HttpSmsGateway`` hands messages to an SMS gateway over HTTP
(``accounts.remote``; the wire contract is in docs/architecture.md).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol

from config import redact_url
from idp.core.clock import Clock
from idp.core.remote import RemoteUnavailable, SignedClient


class SmsUnavailable(Exception):
    """The message could not be handed to the gateway; the reason is for operators and
    holds no phone number or message text."""


class SmsGateway(Protocol):
    source: str

    def send(self, phone: str, text: str) -> None:
        """Hand ``text`` to the gateway for ``phone`` (a normalised mainland mobile
        number) or raise ``SmsUnavailable``."""
        ...


class FileSmsGateway:
    """Development only: messages are written to a file instead of being sent."""

    source = "sms:development"

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()

    def send(self, phone: str, text: str) -> None:
        line = json.dumps(
            {"at": self._clock.now().isoformat(), "to": phone, "text": text}, ensure_ascii=False
        )
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
        except OSError as exc:
            raise SmsUnavailable(f"cannot write {self.path.name}: {exc.strerror}") from None


class HttpSmsGateway:
    """An SMS gateway: ``POST <sms_gateway_url>`` with ``{"phone", "text"}``; any 2xx
    means accepted. Every attempt of one message carries the same ``X-IDP-Request-Id``,
    so the gateway can drop a repeat after a retry."""

    def __init__(self, client: SignedClient) -> None:
        self._client = client
        self.source = "sms:" + redact_url(client.service.url)

    def send(self, phone: str, text: str) -> None:
        try:
            self._client.post_json("", {"phone": phone, "text": text}, _accepted)
        except RemoteUnavailable as exc:
            raise SmsUnavailable(str(exc)) from None


def _accepted(_answer: Any) -> None:
    """A 2xx is acceptance, whatever its body says."""
