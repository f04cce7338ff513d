"""Sending text messages (one-time codes for real-name level 2).

``SmsGateway`` is the interface. ``FileSmsGateway`` is the development gateway: it
sends nothing and appends each message to a file (``<data_dir>/sms.log``), and start-up
says so loudly. The HTTP gateway for a real SMS provider implements the same interface.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Protocol

from idp.core.clock import Clock


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
