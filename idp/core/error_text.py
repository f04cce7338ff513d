"""What an error may say back to a client: the RFC 6749 5.2 character set, bounded.

OAuth error descriptions (``error_description``, in JSON bodies, redirects and
``WWW-Authenticate`` headers) may only contain %x20-21 / %x23-5B / %x5D-7E. Libraries
build descriptions from request parameters (Authlib: "The response type '...' is not
supported"), so a description is made safe before it leaves, never echoing raw input:
every run of other characters becomes one ``?`` and the text is cut at
``MAX_DESCRIPTION`` characters.
"""

from __future__ import annotations

import re

MAX_DESCRIPTION = 200
_FORBIDDEN = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]+")


def is_safe_description(text: str) -> bool:
    return len(text) <= MAX_DESCRIPTION and _FORBIDDEN.search(text) is None


def safe_description(text: str, *, fallback: str | None = None) -> str:
    """``text`` as a safe description. With ``fallback`` (itself safe), a text that
    needs changing is replaced by it whole (e.g. a translated message: question marks
    in place of Chinese would help nobody)."""
    if is_safe_description(text):
        return text
    if fallback is not None:
        return fallback
    cleaned = _FORBIDDEN.sub("?", text)
    if len(cleaned) > MAX_DESCRIPTION:
        cleaned = cleaned[: MAX_DESCRIPTION - 3] + "..."
    return cleaned
