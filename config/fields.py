"""Checks shared by the top-level settings and the list sections (``config.sections``).

Each check is a plain function that returns the cleaned value or raises ``ValueError``
with a message that completes "invalid setting NAME: ..."; the annotated types below
attach them to fields.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator

# A section's name appears in URLs (/federation/NAME/login) and on the command line.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
# dotted decimal, first arc 0-2, no leading zeros (X.660)
_OID = re.compile(r"^[0-2](?:\.(?:0|[1-9][0-9]*))+$")
_LOOPBACK_NAMES = {"localhost"}
# printable ASCII without spaces: client ids, claim names, acr values
_TOKEN = re.compile(r"^[\x21-\x7e]{1,255}$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 3.3 scope-token

DISPLAY_NAME_MAX = 100


def http_url(value: str) -> str:
    """An http(s) URL with a host; a trailing slash is dropped (base URLs)."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


def _without_credentials(value: str) -> str:
    try:
        parts = urlsplit(value)
        userinfo = parts.username is not None or parts.password is not None
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("must be an http(s) URL") from None
    if userinfo:
        raise ValueError("must not carry credentials (user:password@), secrets have their own keys")
    if parts.fragment:
        raise ValueError("must not have a fragment")
    return value


def section_url(value: str) -> str:
    """A URL in a list section: http(s), no credentials in it, no fragment."""
    return http_url(_without_credentials(value))


def is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def issuer_url(value: str) -> str:
    """Another provider's issuer identifier, kept exactly as given (OpenID Connect
    compares it character for character): https, or http on a loopback host only."""
    _without_credentials(value)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an https URL such as https://id.gd.gov.cn")
    if parts.query:
        raise ValueError("must not have a query")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must be https (plain http only on a loopback address)")
    return value


def oid(value: str) -> str:
    if not _OID.match(value):
        raise ValueError("must be an object identifier such as 2.16.156.339.1.1")
    first, second = (int(arc) for arc in value.split(".")[:2])
    if first < 2 and second >= 40:
        raise ValueError("must be an object identifier (its second arc is above 39)")
    return value


def section_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "must be 1-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError("must be 1-255 printable ASCII characters without spaces")
    return value


def scope(value: str) -> str:
    if not _SCOPE.match(value):
        raise ValueError("must be a scope: printable ASCII without spaces, quotes or backslashes")
    return value


def display_name(value: str) -> str:
    """A name shown to people (a provincial hall's, say): 1-100 printable characters."""
    value = value.strip()
    if not 1 <= len(value) <= DISPLAY_NAME_MAX or not value.isprintable():
        raise ValueError(f"must be 1-{DISPLAY_NAME_MAX} printable characters")
    return value


def _file_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must be the path of a file")
    return value


HttpUrl = Annotated[str, AfterValidator(section_url)]
IssuerUrl = Annotated[str, AfterValidator(issuer_url)]
Oid = Annotated[str, AfterValidator(oid)]
SectionName = Annotated[str, AfterValidator(section_name)]
Token = Annotated[str, AfterValidator(token)]
Scope = Annotated[str, AfterValidator(scope)]
FilePath = Annotated[Path, BeforeValidator(_file_path)]
DisplayName = Annotated[str, AfterValidator(display_name)]
