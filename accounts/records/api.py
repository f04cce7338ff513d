"""The records API (``/api/v1/records``) for service systems, and its OpenAPI document.

Callers are OAuth clients holding their own access token (client credentials) with the
scope ``records:write``; a client reads and writes only its own records. Every refusal
is JSON ``{"error", "error_description", "field"}`` (``field`` names the offending
field, or is null): no token or a bad one 401, a token without the scope or not the
client's own 403, an unknown record 404, an invalid transition or a clash of external
ids 409, a body over ``MAX_BODY_BYTES`` 413, a body that is not JSON 400 (415 for
another media type), a field that breaks its rule 422. Errors other layers answer
under ``/api/v1/`` (405, 404, the input guard) are put in the same shape.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, request, url_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from accounts.records import openapi
from accounts.records.container import Records
from accounts.records.models import RecordStatus, ServiceRecord
from accounts.records.schemas import MAX_BODY_BYTES, Record, RecordCreate, RecordList, RecordUpdate
from accounts.records.services import MAX_PAGE, RecordError, RecordService
from idp.core.error_text import safe_description
from idp.core.runtime import audit_log, db
from idp.core.web import register_json_blueprint

SCOPE = "records:write"
PREFIX = "/api/v1"
MAX_FIELD_NAME = 100
_RECORD_ID = re.compile(r"[0-9a-f-]{36}")
_STATUS_ERRORS = {
    400: "invalid_request",
    401: "invalid_token",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "slow_down",
}

M = TypeVar("M", bound=BaseModel)

bp = Blueprint("records_api", __name__, url_prefix=PREFIX)


class ApiError(Exception):
    def __init__(self, status: int, error: str, description: str, field: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.field = field


def error_body(error: str, description: str, field: str | None = None) -> dict[str, Any]:
    """RFC 6749's characters only in the description (a field name may be anything a
    caller sent); the field as named, bounded."""
    named = None if field is None else field[:MAX_FIELD_NAME]
    return {"error": error, "error_description": safe_description(description), "field": named}


def error_response(exc: ApiError) -> Response:
    response = Response(
        json.dumps(error_body(exc.error, exc.description, exc.field), ensure_ascii=False),
        status=exc.status,
        mimetype="application/json",
    )
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="records", error="invalid_token"'
    elif exc.status == 403:
        response.headers["WWW-Authenticate"] = (
            f'Bearer realm="records", error="insufficient_scope", scope="{SCOPE}"'
        )
    return response


def _answer(body: BaseModel | dict[str, Any], status: int = 200) -> Response:
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    response = Response(
        json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# -- authentication -----------------------------------------------------------------------


@bp.before_request
def _authenticate() -> Response | None:
    if request.endpoint == "records_api.openapi_document":
        return None
    if request.method in {"POST", "PATCH"}:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return error_response(_too_large())
        request.max_content_length = MAX_BODY_BYTES
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(ApiError(401, "invalid_token", "A bearer access token is required."))
    claims = Records.of().bearer(token.strip())
    if claims is None:
        return error_response(ApiError(401, "invalid_token", "The access token is not valid."))
    client_id = claims.get("client_id")
    own = isinstance(client_id, str) and claims.get("sub") == client_id and "gid" not in claims
    if not own or SCOPE not in str(claims.get("scope", "")).split():
        reason = "not the client's own token" if not own else "scope"
        if isinstance(client_id, str):
            audit_log(f"client:{client_id}").record(
                "records.access", "failure", details={"reason": reason}
            )
            db().commit()
        description = (
            "The records API needs the client's own token (client credentials grant)."
            if not own
            else f"The access token lacks the scope {SCOPE}."
        )
        return error_response(ApiError(403, "insufficient_scope", description))
    g.records_client = client_id
    return None


def _too_large() -> ApiError:
    return ApiError(
        413, "payload_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes."
    )


def _service() -> RecordService:
    return Records.of().service(f"client:{g.records_client}")


# -- reading requests ---------------------------------------------------------------------


def _json_body() -> Any:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        return json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_request", "The body is not valid JSON.") from None


def _validated(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "string_pattern_mismatch":
            message = "holds characters it may not have"
        elif first["type"] == "extra_forbidden":
            message = "is not a field of this request"
        message = message.removeprefix("Value error, ")
        raise ApiError(422, "invalid_request", f"{field}: {message}", field) from None


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: RecordStatus | None = None
    service: str | None = Field(default=None, min_length=1, max_length=200)
    item_code: str | None = Field(default=None, min_length=1, max_length=64)
    external_id: str | None = Field(default=None, min_length=1, max_length=128)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=20, ge=1, le=MAX_PAGE)


def record_json(record: ServiceRecord) -> Record:
    return Record.model_validate(
        {
            "id": record.public_id,
            "external_id": record.external_id,
            "subject": {"type": record.holder_kind.value, "sub": record.subject_sub},
            "service_name": record.service_name,
            "item_code": record.item_code,
            "status": record.status,
            "timeline": [
                {"at": event.at, "status": event.status, "remark": event.remark}
                for event in record.events
            ],
            "result_url": record.result_url,
            "done_online": record.done_online,
            "counter_visits": record.counter_visits,
            "satisfaction": record.satisfaction,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }
    )


def _record_id(record_id: str) -> str:
    if not _RECORD_ID.fullmatch(record_id):
        raise ApiError(404, "not_found", "There is no such record.")
    return record_id


# -- the endpoints ------------------------------------------------------------------------


@bp.post("/records")
def create() -> Response:
    data = _validated(RecordCreate, _json_body())
    record, created = _service().create(g.records_client, data)
    db().commit()
    response = _answer(record_json(record), 201 if created else 200)
    response.headers["Location"] = url_for(".one", record_id=record.public_id)
    return response


@bp.get("/records")
def listing() -> Response:
    query = _validated(ListQuery, request.args.to_dict(flat=True))
    page = _service().page(
        g.records_client,
        status=query.status,
        service=query.service,
        item_code=query.item_code,
        external_id=query.external_id,
        offset=query.offset,
        limit=query.limit,
    )
    return _answer(
        RecordList(
            records=[record_json(r) for r in page.records],
            total=page.total,
            offset=page.offset,
            limit=page.limit,
        )
    )


@bp.get("/records/<record_id>")
def one(record_id: str) -> Response:
    return _answer(record_json(_service().get(g.records_client, _record_id(record_id))))


@bp.patch("/records/<record_id>")
def update(record_id: str) -> Response:
    record_id = _record_id(record_id)
    change = _validated(RecordUpdate, _json_body())
    record = _service().update(g.records_client, record_id, change)
    db().commit()
    return _answer(record_json(record))


@bp.get("/openapi.json")
def openapi_document() -> Response:
    response = _answer(openapi.document(request.host_url.rstrip("/") + PREFIX))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# -- errors -------------------------------------------------------------------------------


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc)


@bp.errorhandler(RecordError)
def _record_error(exc: RecordError) -> Response:
    # the refusal's audit event is kept (the service recorded it)
    db().commit()
    return error_response(ApiError(exc.status, exc.error, str(exc), exc.field))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    if isinstance(exc, RequestEntityTooLarge):
        return error_response(_too_large())
    status = exc.code or 400
    status = status if status < 500 else 400
    return error_response(
        ApiError(status, _STATUS_ERRORS.get(status, "invalid_request"), _description(exc))
    )


def _description(exc: HTTPException) -> str:
    return {
        404: "There is nothing at this address.",
        405: "This address does not accept that method.",
    }.get(exc.code or 0, "The request could not be understood.")


def _api_shape(response: Response) -> Response:
    """Any error under /api/v1/ that another layer answered (no rule matched, a method
    not allowed, the input guard) in the API's shape."""
    if not request.path.startswith(PREFIX + "/") or response.status_code < 400:
        return response
    payload = response.get_json(silent=True) if response.is_json else None
    if isinstance(payload, dict) and {"error", "error_description", "field"} <= payload.keys():
        return response
    status = response.status_code
    description = "The request could not be understood."
    if isinstance(payload, dict) and isinstance(payload.get("error_description"), str):
        description = payload["error_description"]
    elif status == 404:
        description = "There is nothing at this address."
    elif status == 405:
        description = "This address does not accept that method."
    error = _STATUS_ERRORS.get(status, "server_error" if status >= 500 else "invalid_request")
    replacement = error_response(ApiError(status, error, description))
    for name in ("Allow", "Retry-After", "WWW-Authenticate"):
        if name in response.headers:
            replacement.headers[name] = response.headers[name]
    return replacement


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(bp)
    register_json_blueprint(app, bp)
    app.after_request(_api_shape)
