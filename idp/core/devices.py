"""A short, human label for the browser behind a request ("Chrome on Windows").

Only what the account's sessions page shows: the browser family and the operating
system, found by a few substrings of the User-Agent, in the order that tells the
common browsers apart (Edge and Opera say "Chrome" too, Chrome says "Safari"). No
version, nothing that identifies the device further; an unknown agent is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

# (marker in the User-Agent, name shown): the first match wins
_BROWSERS = (
    ("MicroMessenger", "WeChat"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Opera", "Opera"),
    ("HeadlessChrome", "Chrome"),
    ("SamsungBrowser", "Samsung Internet"),
    ("UCBrowser", "UC Browser"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("MSIE ", "Internet Explorer"),
    ("Trident/", "Internet Explorer"),
    ("curl/", "curl"),
)
_SYSTEMS = (
    ("HarmonyOS", "HarmonyOS"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)
MAX_USER_AGENT = 512


@dataclass(frozen=True)
class Device:
    browser: str | None
    system: str | None

    def to_json(self) -> list[str | None]:
        return [self.browser, self.system]

    @classmethod
    def from_json(cls, raw: object) -> Device:
        if isinstance(raw, list) and len(raw) == 2:
            browser, system = raw
            return cls(
                browser if isinstance(browser, str) else None,
                system if isinstance(system, str) else None,
            )
        return cls(None, None)


def device_of(user_agent: str | None) -> Device:
    """The browser and system named by a User-Agent header (either may be None)."""
    agent = (user_agent or "")[:MAX_USER_AGENT]
    browser = next((name for marker, name in _BROWSERS if marker in agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in agent), None)
    return Device(browser, system)
