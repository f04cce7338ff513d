"""Prometheus metrics. ``/metrics`` needs the bearer token from ``IDP_METRICS_TOKEN``.

Under several worker processes, ``idp serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
this module is imported, and the endpoint aggregates every worker's values.
"""

from __future__ import annotations

import hmac
import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, abort, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from idp.core.runtime import Runtime

SIGNINS = Counter("idp_signins", "Sign-in attempts by step and outcome", ["step", "outcome"])
REQUEST_SECONDS = Histogram(
    "idp_request_duration_seconds",
    "Time to answer a request",
    ["endpoint", "method", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    token = Runtime.of().settings.metrics_token
    if token is None:
        abort(404)
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(supplied.encode(), token.get_secret_value().encode()):
        return Response(
            "metrics need a bearer token\n",
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            mimetype="text/plain",
        )
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.request_started = time.perf_counter()


_children: dict[tuple[str, str, int], Any] = {}


def observe_request(endpoint: str, method: str, status: int, started: float) -> None:
    key = (endpoint, method, status)
    child = _children.get(key)
    if child is None:  # labels() is slow; a worker sees few distinct label sets
        child = _children[key] = REQUEST_SECONDS.labels(endpoint, method, str(status))
    child.observe(time.perf_counter() - started)


def _observe(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        endpoint = request.url_rule.endpoint if request.url_rule else "unmatched"
        observe_request(endpoint, request.method, response.status_code, started)
    return response


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)
