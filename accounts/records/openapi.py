"""The OpenAPI 3.1 document of the records API. Its schemas are generated from the
pydantic models that validate the requests and build the responses (``schemas``), so
the two cannot drift; the paths, parameters and status codes are written here, next
to each other, and the tests check real answers against them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from accounts.records.models import RecordStatus
from accounts.records.schemas import (
    MAX_BODY_BYTES,
    Error,
    Record,
    RecordCreate,
    RecordList,
    RecordUpdate,
)
from accounts.records.services import MAX_PAGE, TRANSITIONS

_REF = "#/components/schemas/{model}"
_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (RecordCreate, "validation"),
    (RecordUpdate, "validation"),
    (Record, "serialization"),
    (RecordList, "serialization"),
    (Error, "serialization"),
]


def _schemas() -> tuple[dict[str, Any], dict[str, str]]:
    refs, top = models_json_schema(_MODELS, ref_template=_REF)
    names = {model.__name__: refs[(model, mode)]["$ref"] for model, mode in _MODELS}
    return top["$defs"], names


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _error(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": _json(ref)}


def document(server_url: str) -> dict[str, Any]:
    schemas, ref = _schemas()
    error = ref["Error"]
    bearer = [{"clientCredentials": ["records:write"]}]
    common = {
        "401": _error("No access token, or not a valid one.", error),
        "403": _error("The token lacks the scope records:write or is not the client's own.", error),
    }
    record_id = {
        "name": "record_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 36, "maxLength": 36},
        "description": "The record's id (the `id` in a record).",
    }
    graph = "; ".join(
        f"{status.value} → {', '.join(sorted(s.value for s in after)) or '(final)'}"
        for status, after in TRANSITIONS.items()
    )
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Service records API (办事信息)",
            "version": "1.0.0",
            "description": (
                "Service systems (OAuth clients with the scope `records:write`, holding a "
                "client-credentials access token) create and update the records of the "
                "applications they handle, for a person or an organisation that has signed "
                "in to them. A client reads and writes only its own records. Status "
                f"transitions: {graph}. Errors are JSON with `error`, `error_description` "
                f"and `field`. Request bodies are at most {MAX_BODY_BYTES} bytes."
            ),
        },
        "servers": [{"url": server_url}],
        "security": bearer,
        "paths": {
            "/records": {
                "post": {
                    "operationId": "createRecord",
                    "summary": "Create a record, or update the one with this external id",
                    "requestBody": {"required": True, "content": _json(ref["RecordCreate"])},
                    "responses": {
                        "201": {
                            "description": "Created.",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": _json(ref["Record"]),
                        },
                        "200": {
                            "description": (
                                "A record with this external id existed: it is returned, "
                                "with the fields sent applied."
                            ),
                            "content": _json(ref["Record"]),
                        },
                        "400": _error("The body is not a JSON object.", error),
                        **common,
                        "409": _error(
                            "The external id belongs to a record for another subject, or "
                            "the status change is not a valid transition.",
                            error,
                        ),
                        "413": _error("The body is too large.", error),
                        "415": _error("The body is not application/json.", error),
                        "422": _error(
                            "A field breaks its rule, or the subject is unknown to this "
                            "client (`unknown_subject`); `field` names it.",
                            error,
                        ),
                    },
                },
                "get": {
                    "operationId": "listRecords",
                    "summary": "The client's records, newest first",
                    "parameters": [
                        _query(
                            "status", {"type": "string", "enum": [s.value for s in RecordStatus]}
                        ),
                        _query("service", {"type": "string", "minLength": 1, "maxLength": 200}),
                        _query("item_code", {"type": "string", "minLength": 1, "maxLength": 64}),
                        _query("external_id", {"type": "string", "minLength": 1, "maxLength": 128}),
                        _query("offset", {"type": "integer", "minimum": 0, "default": 0}),
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 20},
                        ),
                    ],
                    "responses": {
                        "400": _error("The query could not be read.", error),
                        "200": {
                            "description": "A page of records.",
                            "content": _json(ref["RecordList"]),
                        },
                        **common,
                        "422": _error("A parameter breaks its rule; `field` names it.", error),
                    },
                },
            },
            "/records/{record_id}": {
                "parameters": [record_id],
                "get": {
                    "operationId": "getRecord",
                    "summary": "One of the client's records",
                    "responses": {
                        "200": {"description": "The record.", "content": _json(ref["Record"])},
                        "400": _error("The request could not be read.", error),
                        **common,
                        "404": _error("No such record of this client.", error),
                    },
                },
                "patch": {
                    "operationId": "updateRecord",
                    "summary": "Change the status (with a remark), result link, counter visits, "
                    "done online",
                    "requestBody": {"required": True, "content": _json(ref["RecordUpdate"])},
                    "responses": {
                        "200": {"description": "The record.", "content": _json(ref["Record"])},
                        "400": _error("The body is not a JSON object.", error),
                        **common,
                        "404": _error("No such record of this client.", error),
                        "409": _error("Not a valid status transition.", error),
                        "413": _error("The body is too large.", error),
                        "415": _error("The body is not application/json.", error),
                        "422": _error("A field breaks its rule; `field` names it.", error),
                    },
                },
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "clientCredentials": {
                    "type": "oauth2",
                    "description": "An access token from the token endpoint "
                    "(grant_type=client_credentials, scope records:write).",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": server_url.rsplit("/api/", 1)[0] + "/token",
                            "scopes": {"records:write": "Create and update service records."},
                        }
                    },
                }
            },
        },
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}
