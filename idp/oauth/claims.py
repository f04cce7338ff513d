"""Which user claims a client receives: by scope (OpenID Connect Core 5.4) and by the
``claims`` request parameter (5.5)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "preferred_username", "nickname", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}
SUPPORTED_CLAIMS = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "sid",
    *sorted({claim for claims in SCOPE_CLAIMS.values() for claim in claims}),
)


class ClaimsRequestError(ValueError):
    """The ``claims`` parameter is not a valid claims request."""


def parse_claims_request(raw: str | None) -> dict[str, Any] | None:
    """Parse and check the ``claims`` parameter (a JSON object with ``userinfo`` and/or
    ``id_token`` members, each mapping claim names to null or an object)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise ClaimsRequestError("the claims parameter is not valid JSON") from None
    if not isinstance(value, dict):
        raise ClaimsRequestError("the claims parameter must be a JSON object")
    result: dict[str, Any] = {}
    for member in ("userinfo", "id_token"):
        requested = value.get(member)
        if requested is None:
            continue
        if not isinstance(requested, dict) or not all(
            spec is None or isinstance(spec, dict) for spec in requested.values()
        ):
            raise ClaimsRequestError(f"claims.{member} must map claim names to null or objects")
        result[member] = requested
    return result


def requested_names(claims: dict[str, Any] | None, member: str) -> list[str]:
    if not claims:
        return []
    return list((claims.get(member) or {}).keys())


def essential_acr_values(claims: dict[str, Any] | None) -> list[str] | None:
    """The acr values a client requires (``"essential": true``), if it requires any."""
    spec = ((claims or {}).get("id_token") or {}).get("acr")
    if not isinstance(spec, dict) or not spec.get("essential"):
        return None
    if "value" in spec:
        return [str(spec["value"])]
    values = spec.get("values")
    return [str(v) for v in values] if isinstance(values, list) else None


def release(
    available: Callable[[], dict[str, Any]],
    scope: Iterable[str],
    extra_names: Iterable[str] = (),
) -> dict[str, Any]:
    """The claims permitted by ``scope`` plus the explicitly requested ones, among those
    known for the user (``available`` is only called when something is permitted)."""
    wanted = [claim for s in scope for claim in SCOPE_CLAIMS.get(s, ())]
    wanted += [name for name in extra_names if name in SUPPORTED_CLAIMS]
    if not wanted:
        return {}
    known = available()
    return {name: known[name] for name in dict.fromkeys(wanted) if name in known}
