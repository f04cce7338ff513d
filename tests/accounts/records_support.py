"""The records API driven as a service system would, with every answer checked against
the OpenAPI document the service serves (``/api/v1/openapi.json``)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.test import TestResponse

from tests.oauth_support import RP, register

SCOPE = "openid profile enterprise records:write"
GRANTS = ["authorization_code", "refresh_token", "client_credentials"]


def service(app: Flask, client_id: str = "svc", redirect: str | None = None, **values: Any) -> RP:
    values.setdefault("scope", SCOPE)
    values.setdefault("grant_types", GRANTS)
    values.setdefault("first_party", True)
    redirect = redirect or f"https://{client_id}.example.gov.cn/cb"
    values.setdefault("redirect_uris", [redirect])
    _, secret = register(app, client_id, **values)
    return RP(app, client_id, secret, redirect)


def client_token(client: FlaskClient, rp: RP, scope: str | None = "records:write") -> str:
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    response = rp.post(client, "/token", data)
    assert response.status_code == 200, response.get_data(as_text=True)
    token: str = response.get_json()["access_token"]
    return token


class OpenApi:
    """The served document, and a check of one answer against it."""

    def __init__(self, client: FlaskClient) -> None:
        response = client.get("/api/v1/openapi.json")
        assert response.status_code == 200
        self.document: dict[str, Any] = response.get_json()
        self.checked: list[tuple[str, str, int]] = []
        for schema in self.document["components"]["schemas"].values():
            Draft202012Validator.check_schema(schema)

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        route = path.split("?", 1)[0].removeprefix("/api/v1")
        for template, item in self.document["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, route) and method.lower() in item:
                return template, item[method.lower()]
        raise AssertionError(f"{method} {path} is not in the OpenAPI document")

    def check(self, method: str, path: str, response: TestResponse) -> None:
        template, operation = self.operation(method, path)
        status = str(response.status_code)
        responses = operation["responses"]
        assert status in responses, f"{method} {template}: {status} is not documented"
        content = responses[status].get("content")
        assert content is not None, f"{method} {template} {status}: no body documented"
        assert response.mimetype in content, response.mimetype
        schema = {**content[response.mimetype]["schema"], "components": self.document["components"]}
        Draft202012Validator(schema).validate(json.loads(response.get_data()))
        self.checked.append((method, template, response.status_code))


class Api:
    """One service system's calls, each answer validated against the document."""

    def __init__(self, client: FlaskClient, openapi: OpenApi, token: str | None) -> None:
        self.client = client
        self.openapi = openapi
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> TestResponse:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        response = self.client.open(
            path,
            method=method,
            data=data,
            headers=sent,
            content_type=content_type if data is not None else None,
        )
        self.openapi.check(method, path, response)
        return response

    def create(self, body: dict[str, Any]) -> TestResponse:
        return self.call("POST", "/api/v1/records", body)

    def get(self, record_id: str) -> TestResponse:
        return self.call("GET", f"/api/v1/records/{record_id}")

    def patch(self, record_id: str, body: Any) -> TestResponse:
        return self.call("PATCH", f"/api/v1/records/{record_id}", body)

    def list(self, query: str = "") -> TestResponse:
        return self.call("GET", "/api/v1/records" + (f"?{query}" if query else ""))


def new_record(sub: str, external_id: str = "case-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": external_id,
        "subject": {"type": "person", "sub": sub},
        "service_name": "营业执照办理",
        "item_code": "DG-ITEM-001",
    }
    body.update(fields)
    return body
