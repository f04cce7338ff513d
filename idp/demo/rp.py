"""A small sample service ("relying party") that signs its users in with the provider.

DEVELOPMENT ONLY: ``idp demo`` starts two of them so a new user can watch single
sign-on and single logout between two services. It uses the standard flow: PKCE S256,
state, nonce, RFC 9207 ``iss`` check, ID token verified against the provider's JWKS,
RP-initiated logout, and a back-channel logout endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from flask import Flask, redirect, render_template_string, request, session
from flask.typing import ResponseReturnValue
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,"Microsoft YaHei",sans-serif;max-width:40rem;margin:2rem auto;
padding:0 1rem}header{background:{{ colour }};color:#fff;padding:1rem;border-radius:6px}
a.button{display:inline-block;background:{{ colour }};color:#fff;padding:.5rem 1rem;
border-radius:4px;text-decoration:none}pre{background:#f4f4f4;padding:1rem;overflow:auto}
</style></head><body>
<header><strong>{{ title }}</strong> · sample service (development only)</header>
{% if user %}
  <p>已登录 / Signed in as <strong>{{ user.get("preferred_username", user["sub"]) }}</strong>
     ({{ user.get("acr") }})</p>
  <p><a class="button" href="{{ other_url }}">去 {{ other_title }} / Go to {{ other_title }}</a>
     <a href="/logout">退出 / Sign out</a></p>
  <details><summary>ID token claims</summary><pre>{{ claims }}</pre></details>
{% else %}
  {% if message %}<p>{{ message }}</p>{% endif %}
  <p><a class="button" href="/login">用统一身份认证登录 / Sign in with Dongguan ID</a></p>
{% endif %}
</body></html>"""


@dataclass(frozen=True)
class RelyingParty:
    title: str
    colour: str
    client_id: str
    client_secret: str
    base_url: str
    issuer: str
    other_title: str
    other_url: str


def _http_json(
    url: str, data: dict[str, str] | None = None, auth: tuple[str, str] | None = None
) -> Any:
    headers = {"Accept": "application/json"}
    body = None
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if auth is not None:
        raw = f"{urllib.parse.quote(auth[0])}:{urllib.parse.quote(auth[1])}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - the demo's provider
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")


def create_rp_app(config: RelyingParty) -> Flask:  # noqa: PLR0915 - one small app
    app = Flask(f"rp-{config.client_id}")
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_NAME=f"rp_{config.client_id}", SESSION_COOKIE_SAMESITE="Lax")
    discovery: dict[str, Any] = {}
    logged_out_sids: set[str] = set()
    lock = threading.Lock()

    def metadata() -> dict[str, Any]:
        if not discovery:
            discovery.update(_http_json(config.issuer + "/.well-known/openid-configuration"))
        return discovery

    def keys() -> KeySet:
        return KeySet.import_key_set(_http_json(metadata()["jwks_uri"]))

    def verify(token: str, *, typ: str | None = None) -> dict[str, Any]:
        decoded = jwt.decode(token, keys(), algorithms=["ES256", "RS256"])
        claims = dict(decoded.claims)
        if typ and decoded.header.get("typ") != typ:
            raise JoseError("unexpected token type")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if claims.get("iss") != config.issuer or config.client_id not in audiences:
            raise JoseError("wrong issuer or audience")
        if claims.get("exp", 0) < time.time() - 30:
            raise JoseError("expired")
        return claims

    def page(message: str | None = None) -> str:
        user = session.get("user")
        if user and user.get("sid") in logged_out_sids:
            session.clear()  # the provider told us (back-channel) this session ended
            user, message = None, "您已在另一个服务中退出 / You signed out in another service."
        return render_template_string(
            PAGE,
            title=config.title,
            colour=config.colour,
            user=user,
            message=message,
            other_title=config.other_title,
            other_url=config.other_url,
            claims=json.dumps(user, ensure_ascii=False, indent=2) if user else "",
        )

    @app.get("/")
    def home() -> str:
        return page()

    @app.get("/login")
    def login() -> ResponseReturnValue:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        session["flow"] = {
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "verifier": verifier,
        }
        params = {
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": config.base_url + "/callback",
            "scope": "openid profile realname",
            "state": session["flow"]["state"],
            "nonce": session["flow"]["nonce"],
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        return redirect(metadata()["authorization_endpoint"] + "?" + urllib.parse.urlencode(params))

    @app.get("/callback")
    def callback() -> ResponseReturnValue:
        flow = session.pop("flow", None)
        if not flow or request.args.get("state") != flow["state"]:
            return page("登录请求无效 / Invalid sign-in response (state).")
        if request.args.get("iss") != config.issuer:
            return page("Invalid sign-in response (iss).")
        if "error" in request.args:
            return page(f"登录未完成 / Not signed in: {request.args['error']}")
        tokens = _http_json(
            metadata()["token_endpoint"],
            {
                "grant_type": "authorization_code",
                "code": request.args.get("code", ""),
                "redirect_uri": config.base_url + "/callback",
                "code_verifier": flow["verifier"],
            },
            auth=(config.client_id, config.client_secret),
        )
        try:
            claims = verify(tokens["id_token"])
        except (KeyError, JoseError, ValueError) as exc:
            return page(f"Invalid ID token: {exc}")
        if claims.get("nonce") != flow["nonce"]:
            return page("Invalid ID token (nonce).")
        info = _http_json_bearer(metadata()["userinfo_endpoint"], tokens["access_token"])
        session["user"] = {**claims, **info}
        session["id_token"] = tokens["id_token"]
        return redirect("/")

    @app.get("/logout")
    def logout() -> ResponseReturnValue:
        id_token = session.get("id_token")
        session.clear()
        params = {
            "post_logout_redirect_uri": config.base_url + "/",
            "client_id": config.client_id,
            "state": secrets.token_urlsafe(8),
        }
        if id_token:
            params["id_token_hint"] = id_token
        return redirect(metadata()["end_session_endpoint"] + "?" + urllib.parse.urlencode(params))

    @app.post("/backchannel-logout")
    def backchannel_logout() -> tuple[str, int]:
        try:
            claims = verify(request.form.get("logout_token", ""), typ="logout+jwt")
        except (JoseError, ValueError):
            return "invalid logout token", 400
        events = claims.get("events", {})
        if "http://schemas.openid.net/event/backchannel-logout" not in events or "nonce" in claims:
            return "invalid logout token", 400
        with lock:
            logged_out_sids.add(str(claims.get("sid")))
        return "", 200

    return app


def _http_json_bearer(url: str, token: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def serve_rp(config: RelyingParty, host: str, port: int) -> None:
    """Run one sample service (in its own process, started by ``idp demo``)."""
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    run_simple(host, port, create_rp_app(config), threaded=True)
