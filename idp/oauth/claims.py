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
    # OpenID Connect for Identity Assurance: the verified name, birth date, document
    # number and how they were verified (idp.oauth.assurance)
    "realname": ("verified_claims",),
}
# The scope that governs each claim: asking for the claim needs that scope's consent.
CLAIM_SCOPE = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}
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
    # acting for an organisation (scope enterprise, or a client that requires it):
    # the organisation and RFC 8693's actor (idp.oauth.acting)
    "org",
    "act",
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


def scopes_for(claims: dict[str, Any] | None) -> set[str]:
    """The scopes whose claims a ``claims`` request asks for (they need consent too)."""
    names = set(requested_names(claims, "userinfo")) | set(requested_names(claims, "id_token"))
    return {CLAIM_SCOPE[name] for name in names if name in CLAIM_SCOPE}


def limit_to_scopes(
    claims: dict[str, Any] | None, allowed: frozenset[str] | set[str]
) -> dict[str, Any] | None:
    """Drop requested claims whose scope the client may not have (RFC 6749 3.3)."""
    if not claims:
        return claims
    return {
        member: {
            name: spec
            for name, spec in requested.items()
            if name not in CLAIM_SCOPE or CLAIM_SCOPE[name] in allowed
        }
        for member, requested in claims.items()
    }


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
    available: Callable[[set[str]], dict[str, Any]],
    scope: Iterable[str],
    extra_names: Iterable[str] = (),
    *,
    allowed_scopes: frozenset[str] | set[str],
) -> dict[str, Any]:
    """The claims permitted by ``scope`` plus the explicitly requested ones the client
    may have, among those known for the user (``available`` is given the permitted
    names, and only called when something is permitted)."""
    wanted = [claim for s in scope for claim in SCOPE_CLAIMS.get(s, ())]
    wanted += [
        name
        for name in extra_names
        if name in SUPPORTED_CLAIMS and CLAIM_SCOPE.get(name, "openid") in allowed_scopes
    ]
    if not wanted:
        return {}
    known = available(set(wanted))
    return {name: known[name] for name in dict.fromkeys(wanted) if name in known}
