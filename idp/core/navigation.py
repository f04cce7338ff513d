"""Where to send the user next, without open redirects."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_NEXT = "/account"


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """Accept only a local absolute path: no scheme, no host, no ``//`` or ``/\\``."""
    if not target or len(target) > 2048:
        return default
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
