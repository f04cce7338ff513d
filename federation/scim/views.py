"""The SCIM HTTP layer (RFC 7644): bearer tokens, the endpoints, SCIM errors.

Every answer is ``application/scim+json``; every refusal is a SCIM error (RFC 7644
3.12) with its ``scimType``: a bad token (401), a token without the scope ``scim`` or
not the client's own (403), unknown resources and paths (404), methods an endpoint does
not take (405), bodies that are not JSON (400 ``invalidSyntax``), and what the service
layer refuses. Each rule takes every method and refuses the others itself, so a 405 is
a SCIM error too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from pydantic import ValidationError
from scim2_models import (
    Context,
    ForbiddenException,
    InvalidSyntaxException,
    InvalidValueException,
    ListResponse,
    NotFoundException,
    NotImplementedException,
    ResponseParameters,
    SCIMException,
    UnauthorizedException,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from federation.container import SCIM_PATH, Federation
from federation.scim import schema
from federation.scim.schema import MEDIA_TYPE, SEARCH_REQUEST, ScimUser
from federation.scim.services import Query, scim_error
from idp.core.runtime import audit_log, db
from idp.core.web import register_json_blueprint

SCOPE = "scim"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_JSON_TYPES = {MEDIA_TYPE, "application/json"}

bp = Blueprint("scim", __name__, url_prefix=SCIM_PATH)


def answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_answer(exc: SCIMException) -> Response:
    body = exc.to_error().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="scim", error="invalid_token"'
    elif exc.status == 403:
        headers["WWW-Authenticate"] = (
            f'Bearer realm="scim", error="insufficient_scope", scope="{SCOPE}"'
        )
    return answer(body, exc.status, headers)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        error = SCIMException(detail="The request is too large.")
        error.status = 413
        return error_answer(error)
    error = SCIMException(detail=exc.description or "The request failed.")
    error.status = status if status < 500 else 400
    return error_answer(error)


def _as_scim_error(response: Response) -> Response:
    """An error the app's own layers answered before a SCIM view ran (undecodable or
    NUL-bearing input, a body too large) in SCIM's shape."""
    if response.status_code < 400 or response.mimetype == MEDIA_TYPE:
        return response
    detail = "The request could not be understood."
    if response.mimetype == "application/json":
        payload = response.get_json(silent=True)
        if isinstance(payload, dict) and isinstance(payload.get("error_description"), str):
            detail = payload["error_description"]
    error = SCIMException(detail=detail)
    error.status = response.status_code
    if response.status_code == 400:
        error.scim_type = "invalidSyntax"
    return error_answer(error)


# -- authentication -----------------------------------------------------------------------


def _authenticate() -> None:
    """Before every SCIM request: the caller is a client holding its own token (client
    credentials) with the scope ``scim``. The client id is kept on ``g``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedException(detail="A bearer access token is required.")
    claims = Federation.of().bearer(token.strip())
    if claims is None:
        raise UnauthorizedException(detail="The access token is not valid.")
    client_id = claims.get("client_id")
    own = isinstance(client_id, str) and claims.get("sub") == client_id and "gid" not in claims
    scopes = str(claims.get("scope", "")).split()
    if not own or SCOPE not in scopes:
        if isinstance(client_id, str):
            audit_log(f"client:{client_id}").record(
                "scim.access",
                "failure",
                details={"reason": "not the client's own token" if not own else "scope"},
            )
            db().commit()
        if not own:
            raise ForbiddenException(
                detail="SCIM needs the client's own token (client credentials grant)."
            )
        raise ForbiddenException(detail="The access token lacks the scope scim.")
    g.scim_client = client_id


def _service() -> Any:
    return Federation.of().provisioning(g.scim_client)


# -- reading requests ---------------------------------------------------------------------


def _body() -> dict[str, Any]:
    if request.mimetype not in _JSON_TYPES:
        raise InvalidSyntaxException(detail=f"Send the body as {MEDIA_TYPE}.")
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError):
        raise InvalidSyntaxException(detail="The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="The body must be a JSON object.")
    return body


def _integer(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidValueException(detail=f"{name} must be an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidValueException(detail=f"{name} must be an integer.") from None
    if abs(number) > 2**31:
        raise InvalidValueException(detail=f"{name} is out of range.")
    return number


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValueException(detail=f"{name} must be a string.")
    return value


def _query(source: Mapping[str, Any]) -> Query:
    order = _text(source.get("sortOrder"), "sortOrder")
    if order is not None and order.lower() not in {"ascending", "descending"}:
        raise InvalidValueException(detail="sortOrder is ascending or descending.")
    return Query(
        filter=_text(source.get("filter"), "filter"),
        sort_by=_text(source.get("sortBy"), "sortBy"),
        descending=order is not None and order.lower() == "descending",
        start_index=_integer(source.get("startIndex"), "startIndex", 1),
        count=_integer(source.get("count"), "count", schema.MAX_RESULTS),
    )


def _parameters(source: Mapping[str, Any]) -> ResponseParameters[Any]:
    values = {
        key: source[key]
        for key in ("attributes", "excludedAttributes")
        if source.get(key) not in (None, "", [])
    }
    for key, value in values.items():
        if not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            raise InvalidValueException(detail=f"{key} lists attribute names.")
    try:
        return ResponseParameters[ScimUser].model_validate(values)
    except ValidationError as exc:
        raise scim_error(exc) from None


def _one(resource: ScimUser, context: Context, status: int = 200) -> Response:
    body = resource.model_dump(scim_ctx=context, response_parameters=_parameters(request.args))
    assert resource.meta is not None
    headers = {"ETag": str(resource.meta.version)}
    if status == 201:
        headers["Location"] = str(resource.meta.location)
    return answer(body, status, headers)


def _list(source: Mapping[str, Any]) -> Response:
    query = _query(source)
    parameters = _parameters(source)
    page = _service().search(query)
    listing = ListResponse[ScimUser](
        total_results=page.total,
        start_index=page.start_index,
        items_per_page=len(page.resources),
        resources=page.resources,
    )
    return answer(
        listing.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=parameters)
    )


# -- the endpoints ------------------------------------------------------------------------


def _users() -> Response:
    if request.method == "POST":
        created = _service().create(_body())
        return _one(created, Context.RESOURCE_CREATION_RESPONSE, 201)
    return _list(request.args)


def _search() -> Response:
    body = _body()
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or SEARCH_REQUEST not in schemas:
        raise InvalidSyntaxException(detail=f"schemas must list {SEARCH_REQUEST}.")
    return _list(body)


def _user(user_id: str) -> Response:
    service = _service()
    if_match = request.headers.get("If-Match")
    if request.method == "GET":
        return _one(service.get(user_id), Context.RESOURCE_QUERY_RESPONSE)
    if request.method == "PUT":
        replaced = service.replace(user_id, _body(), if_match=if_match)
        return _one(replaced, Context.RESOURCE_REPLACEMENT_RESPONSE)
    if request.method == "PATCH":
        patched = service.patch(user_id, _body(), if_match=if_match)
        return _one(patched, Context.RESOURCE_PATCH_RESPONSE)
    service.delete(user_id, if_match=if_match)
    return Response(status=204)


def _service_provider_config() -> Response:
    return answer(schema.service_provider_config(Federation.of().scim_base))


def _schemas() -> Response:
    documents = schema.schemas(Federation.of().scim_base)
    return answer(_listing(documents))


def _schema(schema_id: str) -> Response:
    for document in schema.schemas(Federation.of().scim_base):
        if document["id"].lower() == schema_id.lower():
            return answer(document)
    raise NotFoundException(detail="There is no such schema.")


def _resource_types() -> Response:
    return answer(_listing(schema.resource_types(Federation.of().scim_base)))


def _resource_type(name: str) -> Response:
    for document in schema.resource_types(Federation.of().scim_base):
        if document["id"] == name:
            return answer(document)
    raise NotFoundException(detail="There is no such resource type.")


def _me() -> Response:
    raise NotImplementedException(detail="/Me is not supported: use /Users.")


def _nothing(rest: str = "") -> Response:  # noqa: ARG001 - the rule's variable
    raise NotFoundException(detail="There is no SCIM endpoint at this address.")


def _listing(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(documents),
        "startIndex": 1,
        "itemsPerPage": len(documents),
        "Resources": documents,
    }


# rule -> the methods it answers and its view; every rule takes every method, so that
# the others are refused here as SCIM errors
URLS: list[tuple[str, str, tuple[str, ...], Callable[..., Response]]] = [
    ("/ServiceProviderConfig", "service_provider_config", ("GET",), _service_provider_config),
    ("/Schemas", "schemas", ("GET",), _schemas),
    ("/Schemas/<path:schema_id>", "schema", ("GET",), _schema),
    ("/ResourceTypes", "resource_types", ("GET",), _resource_types),
    ("/ResourceTypes/<string:name>", "resource_type", ("GET",), _resource_type),
    ("/Users", "users", ("GET", "POST"), _users),
    ("/Users/.search", "users_search", ("POST",), _search),
    ("/.search", "search", ("POST",), _search),
    ("/Users/<string:user_id>", "user", ("GET", "PUT", "PATCH", "DELETE"), _user),
    ("/Me", "me", tuple(METHODS), _me),
    ("/", "root", (), _nothing),
    ("/<path:rest>", "nothing", (), _nothing),
]


def _guarded(view: Callable[..., Response], allowed: tuple[str, ...]) -> Callable[..., Response]:
    def handle(**kwargs: Any) -> Response:
        try:
            _authenticate()
            if allowed and request.method not in allowed:
                error = SCIMException(detail="This endpoint does not take that method.")
                error.status = 405
                response = error_answer(error)
                response.headers["Allow"] = ", ".join(allowed)
                return response
            return view(**kwargs)
        except SCIMException as exc:
            db().rollback()
            return error_answer(exc)

    handle.__name__ = view.__name__
    return handle


def _other_version(rest: str = "") -> Response:  # noqa: ARG001 - the rule's variable
    error = SCIMException(detail="This service speaks SCIM 2.0 only, at /scim/v2/.")
    error.scim_type = "invalidVers"
    return error_answer(error)


# /scim/v1/..., /scim/anything: not a version this service speaks (no token needed)
versions = Blueprint("scim_versions", __name__, url_prefix="/scim")
versions.add_url_rule("/", "root", _other_version, methods=METHODS)
versions.add_url_rule("/<path:rest>", "other", _other_version, methods=METHODS)

for _rule, _endpoint, _allowed, _view in URLS:
    bp.add_url_rule(_rule, _endpoint, _guarded(_view, _allowed), methods=METHODS)
for _blueprint in (bp, versions):
    _blueprint.register_error_handler(HTTPException, _http_error)
    _blueprint.after_request(_as_scim_error)


def init_app(app: Flask) -> None:
    for blueprint in (bp, versions):
        app.register_blueprint(blueprint)
        app.extensions["csrf"].exempt(blueprint)
        register_json_blueprint(app, blueprint)
