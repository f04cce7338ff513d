"""A member of staff registers a service on /staff/clients (issue 12): the role, their own
level 4 and a second factor; the secret shown once and working; the registry's checks
on the page; refusals from the attacker's side, audited with the staff member as actor."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from accounts.container import Accounts
from accounts.staff.services import StaffRole
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.clients import ClientError, Registration
from idp.oauth.server import OAuthRuntime
from tests.accounts.test_counter import DEPARTMENT, appoint, sign_in_with_otp
from tests.accounts.test_realname import audit_events, user_named
from tests.accounts.test_staff_levels import appoint_as
from tests.support import create_user, csrf_token, sign_in, submit
from tests.support import text as body

FORM = {
    "client_id": "tax-portal",
    "name": "东莞税务 Tax portal",
    "redirect_uris": "https://tax.example/cb\r\n\r\nhttps://tax.example/cb2\n",
    "scope": "openid profile realname",
    "min_level": "3",
    "first_party": "y",
    "require_org": "",
}
SECRET_SHOWN = '<code id="client-secret">'


def registered(app: Flask) -> list[str]:
    with app.app_context():
        return [client.client_id for client in OAuthRuntime.of().clients.all(db())]


def creations(app: Flask, outcome: str) -> list[Any]:
    return [e for e in audit_events(app, "client.create") if e.outcome == outcome]


def secret_in(html: str) -> str:
    start = html.index(SECRET_SHOWN) + len(SECRET_SHOWN)
    return html[start : html.index("</code>", start)]


def authenticates(client: FlaskClient, client_id: str, secret: str) -> bool:
    """Does the secret authenticate the client at the introspection endpoint?"""
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    answer = client.post(
        "/introspect", data={"token": "not-a-token"}, headers={"Authorization": f"Basic {raw}"}
    )
    assert answer.status_code in {200, 401}
    return answer.status_code == 200


@pytest.fixture
def people(app: Flask) -> None:
    create_user(app, "clerk")
    appoint(app, "clerk")  # counter_verifier only
    create_user(app, "admin")
    appoint_as(app, "admin", StaffRole.CLIENT_ADMINISTRATOR)


@pytest.fixture
def admin_client(app: Flask, client: FlaskClient, people: None, clock: FrozenClock) -> FlaskClient:
    sign_in_with_otp(app, client, clock, "admin")
    return client


def test_staff_register_a_service_and_see_its_secret_once(
    app: Flask, admin_client: FlaskClient
) -> None:
    page = admin_client.get("/staff/clients")
    assert page.status_code == 200
    html = body(page)
    for name in ("client_id", "name", "redirect_uris", "scope", "min_level", "first_party"):
        assert f'name="{name}"' in html
    assert 'name="require_org"' in html
    assert DEPARTMENT in html
    assert "No service is registered yet." in html

    done = submit(admin_client, "/staff/clients", FORM)
    assert done.status_code == 200
    assert done.headers["Cache-Control"] == "no-store"
    html = body(done)
    assert "Registered: tax-portal." in html
    secret = secret_in(html)
    assert secret.startswith("dgcs_")
    assert authenticates(admin_client, "tax-portal", secret)
    assert not authenticates(admin_client, "tax-portal", secret[:-2] + "xx")

    with app.app_context():
        client = OAuthRuntime.of().clients.get("tax-portal")
        assert client is not None
        assert client.name == "东莞税务 Tax portal"
        assert client.redirect_uris == ("https://tax.example/cb", "https://tax.example/cb2")
        assert client.scopes == {"openid", "profile", "realname"}
        assert (client.min_level, client.first_party, client.require_org) == (3, True, False)
        assert client.token_endpoint_auth_method == "client_secret_basic"
        stored = " ".join(
            str(value)
            for table in ("oauth_clients", "audit_events")
            for row in db().execute(text(f"SELECT * FROM {table}")).mappings()  # noqa: S608
            for value in row.values()
        )
    assert secret not in stored

    (event,) = creations(app, "success")
    admin = user_named(app, "admin")
    assert (event.actor, event.subject) == (f"staff:{admin.public_id}", "client:tax-portal")
    assert event.client_ip is not None

    listed = body(admin_client.get("/staff/clients"))
    assert "tax-portal" in listed
    assert "https://tax.example/cb2" in listed
    assert SECRET_SHOWN not in listed  # shown once
    assert secret not in listed


def test_an_organisations_only_service(app: Flask, admin_client: FlaskClient) -> None:
    fields = {**FORM, "client_id": "corp", "first_party": "", "require_org": "y"}
    assert submit(admin_client, "/staff/clients", fields).status_code == 200
    with app.app_context():
        client = OAuthRuntime.of().clients.get("corp")
        assert client is not None
        assert (client.first_party, client.require_org, client.min_level) == (False, True, 3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"client_id": ""}, "required"),
        ({"client_id": "x"}, "client id: 2-100 letters"),
        ({"client_id": "bad id!"}, "client id: 2-100 letters"),
        ({"client_id": "x" * 101}, "100"),
        ({"name": "tax\nportal"}, "control characters"),
        ({"name": "x" * 201}, "200"),
        ({"redirect_uris": ""}, "required"),
        ({"redirect_uris": "\n \n"}, "at least one redirect URI"),
        ({"redirect_uris": "tax.example/cb"}, "is not an absolute https URI"),
        ({"redirect_uris": "https://tax.example/cb#frag"}, "must not have a fragment"),
        ({"redirect_uris": "javascript:alert(1)"}, "is not an absolute https URI"),
        ({"redirect_uris": "\n".join(f"https://t.example/{i}" for i in range(11))}, "at most 10"),
        ({"redirect_uris": "https://t.example/" + "a" * 500}, "at most 500 characters"),
        ({"scope": ""}, "required"),
        ({"scope": 'openid "quoted"'}, "space-separated scope names"),
        ({"min_level": "0"}, "Not a valid choice"),
        ({"min_level": "6"}, "Not a valid choice"),
        ({"min_level": "x"}, "Not a valid choice"),
    ],
)
def test_bad_input_is_a_400_and_registers_nothing(
    app: Flask, admin_client: FlaskClient, fields: dict[str, str], message: str
) -> None:
    response = submit(admin_client, "/staff/clients", {**FORM, **fields})
    assert response.status_code == 400
    html = body(response)
    assert message in html
    assert SECRET_SHOWN not in html
    assert registered(app) == []
    assert creations(app, "success") == []


def test_an_existing_client_id_is_refused(app: Flask, admin_client: FlaskClient) -> None:
    first = secret_in(body(submit(admin_client, "/staff/clients", FORM)))
    again = submit(admin_client, "/staff/clients", {**FORM, "name": "Impostor"})
    assert again.status_code == 400
    html = body(again)
    assert "already exists" in html
    assert SECRET_SHOWN not in html
    with app.app_context():
        client = OAuthRuntime.of().clients.get("tax-portal")
        assert client is not None
        assert client.name == FORM["name"]
    assert authenticates(admin_client, "tax-portal", first)  # the secret was not replaced
    assert len(creations(app, "success")) == 1


def test_the_page_refuses_a_missing_or_forged_csrf_token(
    app: Flask, admin_client: FlaskClient
) -> None:
    assert admin_client.post("/staff/clients", data=FORM).status_code == 400
    forged = admin_client.post("/staff/clients", data={**FORM, "csrf_token": "x" * 40})
    assert forged.status_code == 400
    assert registered(app) == []


def test_the_page_needs_a_signed_in_user(app: Flask, client: FlaskClient, people: None) -> None:
    response = client.get("/staff/clients")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert client.post("/staff/clients", data=FORM).status_code == 400  # no CSRF token
    assert registered(app) == []


# -- refusals: who may not ----------------------------------------------------------------


def forge(client: FlaskClient) -> int:
    """GET the page, then POST the form with a valid CSRF token from another page."""
    page = client.get("/staff/clients")
    assert page.status_code == 403
    assert "tax-portal" not in body(page)
    token = csrf_token(body(client.get("/account")))
    return client.post("/staff/clients", data={"csrf_token": token, **FORM}).status_code


def assert_refused(app: Flask, username: str, reason: str) -> None:
    assert registered(app) == []
    (refused,) = creations(app, "failure")  # the POST, not the GET
    assert refused.actor == f"staff:{user_named(app, username).public_id}"
    assert refused.details == {"reason": reason}


def test_a_citizen_is_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    create_user(app, "mallory")
    sign_in_with_otp(app, client, clock, "mallory")
    assert "not registered as staff" in body(client.get("/staff/clients"))
    assert forge(client) == 403
    assert_refused(app, "mallory", "not_staff")


def test_staff_without_the_role_are_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    sign_in_with_otp(app, client, clock, "clerk")
    assert "client_administrator" in body(client.get("/staff/clients"))
    assert forge(client) == 403
    assert_refused(app, "clerk", "no_role")


def test_a_level_administrator_is_not_a_client_administrator(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    create_user(app, "leveller")
    appoint_as(app, "leveller", StaffRole.LEVEL_ADMINISTRATOR)
    sign_in_with_otp(app, client, clock, "leveller")
    assert forge(client) == 403
    assert_refused(app, "leveller", "no_role")


def test_staff_below_level_4_are_refused(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    create_user(app, "junior")
    appoint_as(app, "junior", StaffRole.CLIENT_ADMINISTRATOR, level=3)
    sign_in_with_otp(app, client, clock, "junior")
    assert "level 4" in body(client.get("/staff/clients"))
    assert forge(client) == 403
    assert_refused(app, "junior", "staff_level_too_low")


def test_staff_without_a_second_factor_are_refused(
    app: Flask, client: FlaskClient, people: None
) -> None:
    sign_in(client, "admin")  # password only
    assert "authenticator app" in body(client.get("/staff/clients"))
    assert forge(client) == 403
    assert_refused(app, "admin", "no_second_factor")


def test_staff_whose_role_ended_are_refused_at_once(app: Flask, admin_client: FlaskClient) -> None:
    page = admin_client.get("/staff/clients")
    assert page.status_code == 200
    with app.app_context():  # the role taken away, the counter's kept
        admin = Accounts.of().account_service().find_by_username("admin")
        assert admin is not None
        Accounts.of().staff_service().appoint(
            admin, DEPARTMENT, actor="test", roles=[StaffRole.COUNTER_VERIFIER]
        )
    token = csrf_token(body(page))
    refused = admin_client.post("/staff/clients", data={"csrf_token": token, **FORM})
    assert refused.status_code == 403
    assert_refused(app, "admin", "no_role")


# -- changing, removing, a new secret ------------------------------------------------------

EDIT = {k: v for k, v in FORM.items() if k != "client_id"}
EDIT_URL = "/staff/clients/tax-portal"


@pytest.fixture
def registered_secret(admin_client: FlaskClient) -> str:
    """tax-portal registered by the administrator; its first secret."""
    return secret_in(body(submit(admin_client, "/staff/clients", FORM)))


def events(app: Flask, name: str, outcome: str) -> list[Any]:
    return [e for e in audit_events(app, name) if e.outcome == outcome]


def test_staff_change_a_service(
    app: Flask, admin_client: FlaskClient, registered_secret: str
) -> None:
    page = admin_client.get(EDIT_URL)
    assert page.status_code == 200
    html = body(page)
    assert "https://tax.example/cb2" in html  # the form shows what is registered
    assert 'name="client_id"' not in html  # the id stays
    assert SECRET_SHOWN not in html
    changed = {
        **EDIT,
        "name": "Tax portal (new)",
        "redirect_uris": "https://tax.example/new",
        "scope": "openid realname",
        "min_level": "4",
        "first_party": "",
        "require_org": "y",
    }
    done = submit(admin_client, EDIT_URL, changed)
    assert done.status_code == 302
    assert "was changed" in body(admin_client.get(done.headers["Location"]))
    with app.app_context():
        client = OAuthRuntime.of().clients.get("tax-portal")
        assert client is not None
        assert client.name == "Tax portal (new)"
        assert client.redirect_uris == ("https://tax.example/new",)
        assert client.scopes == {"openid", "realname"}
        assert (client.min_level, client.first_party, client.require_org) == (4, False, True)
    assert authenticates(admin_client, "tax-portal", registered_secret)  # the secret stays
    (event,) = events(app, "client.update", "success")
    admin = user_named(app, "admin")
    assert (event.actor, event.subject) == (f"staff:{admin.public_id}", "client:tax-portal")
    assert event.details["changed"] == [
        "first_party",
        "min_level",
        "name",
        "redirect_uris",
        "require_org",
        "scope",
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"redirect_uris": "javascript:alert(1)"}, "is not an absolute https URI"),
        ({"redirect_uris": "https://tax.example/cb#x"}, "must not have a fragment"),
        ({"redirect_uris": ""}, "authorization_code needs at least one redirect URI"),
        ({"redirect_uris": "\n \n"}, "authorization_code needs at least one redirect URI"),
        ({"scope": 'openid "x"'}, "space-separated scope names"),
        ({"min_level": "9"}, "Not a valid choice"),
        ({"name": "a\tb"}, "control characters"),
    ],
)
def test_a_bad_change_is_a_400_and_changes_nothing(
    app: Flask,
    admin_client: FlaskClient,
    registered_secret: str,  # registers the client
    fields: dict[str, str],
    message: str,
) -> None:
    response = submit(admin_client, EDIT_URL, {**EDIT, **fields})
    assert response.status_code == 400
    assert message in body(response)
    with app.app_context():
        client = OAuthRuntime.of().clients.find(db(), "tax-portal")
        assert client is not None
        assert client.redirect_uris == ("https://tax.example/cb", "https://tax.example/cb2")
        assert client.scopes == {"openid", "profile", "realname"}
    assert events(app, "client.update", "success") == []


def test_a_service_without_the_code_grant_is_changed_without_redirect_uris(
    app: Flask, admin_client: FlaskClient
) -> None:
    with app.app_context():
        OAuthRuntime.of().clients.create(
            db(), Registration(client_id="batch-job", grant_types=["client_credentials"])
        )
    url = "/staff/clients/batch-job"
    done = submit(admin_client, url, {**EDIT, "redirect_uris": "", "name": "Batch"})
    assert done.status_code == 302
    with app.app_context():
        client = OAuthRuntime.of().clients.find(db(), "batch-job")
        assert client is not None
        assert (client.name, client.redirect_uris) == ("Batch", ())


def test_an_unknown_service_is_a_404(admin_client: FlaskClient) -> None:
    assert admin_client.get("/staff/clients/nobody").status_code == 404
    token = csrf_token(body(admin_client.get("/staff/clients")))
    for url in ("/staff/clients/nobody/delete", "/staff/clients/nobody/secret"):
        assert admin_client.post(url, data={"csrf_token": token}).status_code == 404
    assert (
        submit(admin_client, "/staff/clients/nobody", EDIT, form_url="/staff/clients").status_code
        == 404
    )


def test_staff_give_a_service_a_new_secret_shown_once(
    app: Flask, admin_client: FlaskClient, registered_secret: str
) -> None:
    response = submit(admin_client, EDIT_URL + "/secret", {}, form_url=EDIT_URL)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = secret_in(body(response))
    assert new.startswith("dgcs_")
    assert new != registered_secret
    assert authenticates(admin_client, "tax-portal", new)
    assert not authenticates(admin_client, "tax-portal", registered_secret)
    with app.app_context():
        stored = " ".join(
            str(value)
            for table in ("oauth_clients", "audit_events")
            for row in db().execute(text(f"SELECT * FROM {table}")).mappings()  # noqa: S608
            for value in row.values()
        )
        client = OAuthRuntime.of().clients.find(db(), "tax-portal")
        assert client is not None
        assert client.check_client_secret(new)
    assert new not in stored  # only its HMAC
    assert new not in body(admin_client.get(EDIT_URL))  # shown once
    (event,) = events(app, "client.rotate_secret", "success")
    assert event.actor == f"staff:{user_named(app, 'admin').public_id}"
    assert event.subject == "client:tax-portal"


def test_a_public_client_has_no_secret_to_rotate(app: Flask, admin_client: FlaskClient) -> None:
    with app.app_context():
        OAuthRuntime.of().clients.create(
            db(),
            Registration(
                client_id="app-mobile", redirect_uris=["https://m.example/cb"], public=True
            ),
        )
    url = "/staff/clients/app-mobile"
    assert "new secret" not in body(admin_client.get(url))
    refused = submit(admin_client, url + "/secret", {}, form_url=url)
    assert refused.status_code == 400
    assert "does not authenticate with a secret" in body(refused)
    assert SECRET_SHOWN not in body(refused)


def test_staff_remove_a_service(
    app: Flask, admin_client: FlaskClient, registered_secret: str
) -> None:
    done = submit(admin_client, EDIT_URL + "/delete", {}, form_url=EDIT_URL)
    assert done.status_code == 302
    assert done.headers["Location"] == "/staff/clients"
    assert "was removed" in body(admin_client.get("/staff/clients"))
    assert registered(app) == []
    assert not authenticates(admin_client, "tax-portal", registered_secret)
    (event,) = events(app, "client.delete", "success")
    assert event.actor == f"staff:{user_named(app, 'admin').public_id}"
    assert event.subject == "client:tax-portal"


@pytest.mark.parametrize("action", ["", "/delete", "/secret"])
def test_the_changes_refuse_a_post_without_csrf(
    app: Flask, admin_client: FlaskClient, registered_secret: str, action: str
) -> None:
    data = EDIT if action == "" else {}
    assert admin_client.post(EDIT_URL + action, data={**data, "name": "Forged"}).status_code == 400
    forged = admin_client.post(EDIT_URL + action, data={**data, "csrf_token": "x" * 40})
    assert forged.status_code == 400
    with app.app_context():
        client = OAuthRuntime.of().clients.find(db(), "tax-portal")
        assert client is not None
        assert client.name == FORM["name"]
    assert authenticates(admin_client, "tax-portal", registered_secret)
    for name in ("client.update", "client.delete", "client.rotate_secret"):
        assert events(app, name, "success") == []


def register_directly(app: Flask) -> str:
    with app.app_context():
        _client, secret = OAuthRuntime.of().clients.create(
            db(), Registration(client_id="tax-portal", redirect_uris=["https://tax.example/cb"])
        )
    assert secret is not None
    return secret


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        ("mallory", "not_staff"),
        ("clerk", "no_role"),
        ("junior", "staff_level_too_low"),
        ("admin-no-otp", "no_second_factor"),
    ],
)
@pytest.mark.parametrize(
    ("action", "event"),
    [("", "client.update"), ("/delete", "client.delete"), ("/secret", "client.rotate_secret")],
)
def test_the_changes_are_refused_to_others_and_audited(
    app: Flask,
    client: FlaskClient,
    people: None,
    clock: FrozenClock,
    username: str,
    reason: str,
    action: str,
    event: str,
) -> None:
    secret = register_directly(app)
    if username == "mallory":
        create_user(app, "mallory")
    if username == "junior":
        create_user(app, "junior")
        appoint_as(app, "junior", StaffRole.CLIENT_ADMINISTRATOR, level=3)
    if username == "admin-no-otp":
        sign_in(client, "admin")  # password only
        username = "admin"
    else:
        sign_in_with_otp(app, client, clock, username)
    page = client.get(EDIT_URL)
    assert page.status_code == 403
    assert "https://tax.example/cb" not in body(page)
    token = csrf_token(body(client.get("/account")))
    data = {**EDIT, "name": "Forged"} if action == "" else {}
    assert client.post(EDIT_URL + action, data={"csrf_token": token, **data}).status_code == 403
    with app.app_context():
        found = OAuthRuntime.of().clients.find(db(), "tax-portal")
        assert found is not None
        assert found.name == "tax-portal"
    assert authenticates(client, "tax-portal", secret)
    assert events(app, event, "success") == []
    (refused,) = events(app, event, "failure")  # the POST, not the GET
    assert refused.actor == f"staff:{user_named(app, username).public_id}"
    assert refused.subject == "client:tax-portal"
    assert refused.details == {"reason": reason}


# -- the registry's refusals in the page's language ---------------------------------------


def test_the_registrys_refusals_are_shown_in_chinese(
    app: Flask, admin_client: FlaskClient, registered_secret: str
) -> None:
    admin_client.get("/locale?lang=zh_CN&next=/staff/clients")
    bad_uri = submit(
        admin_client,
        "/staff/clients",
        {**FORM, "client_id": "x2", "redirect_uris": "tax.example/cb"},
    )
    assert bad_uri.status_code == 400
    html = body(bad_uri)
    assert '<html lang="zh-CN">' in html
    assert "服务未登记：重定向 URI“tax.example/cb”不是绝对的 https URI。" in html  # noqa: RUF001 - Chinese punctuation
    assert "absolute https URI" not in html
    again = body(submit(admin_client, "/staff/clients", FORM))
    assert "客户端标识“tax-portal”已存在" in again
    assert "already exists" not in again
    changed = body(
        submit(admin_client, EDIT_URL, {**EDIT, "redirect_uris": "https://t.example/#x"})
    )
    assert "服务未修改：重定向 URI“https://t.example/#x”不能带片段（#）。" in changed  # noqa: RUF001
    with app.app_context():
        OAuthRuntime.of().clients.create(
            db(),
            Registration(
                client_id="app-mobile", redirect_uris=["https://m.example/cb"], public=True
            ),
        )
    url = "/staff/clients/app-mobile"
    rotated = body(submit(admin_client, url + "/secret", {}, form_url=url))
    assert "客户端“app-mobile”不使用密钥认证" in rotated
    assert registered_secret not in rotated


def test_the_registrys_refusals_stay_english_for_the_cli(app: Flask) -> None:
    with app.app_context(), pytest.raises(ClientError) as refused:
        OAuthRuntime.of().clients.create(
            db(), Registration(client_id="cli-app", redirect_uris=["tax.example/cb"])
        )
    assert str(refused.value) == "redirect URI 'tax.example/cb' is not an absolute https URI"
    assert refused.value.message == "redirect URI '%(uri)s' is not an absolute https URI"
    assert refused.value.params == {"uri": "tax.example/cb"}


def test_a_refused_post_for_an_absurd_client_id_is_a_403_not_an_error(
    app: Flask, client: FlaskClient, people: None, clock: FrozenClock
) -> None:
    sign_in_with_otp(app, client, clock, "clerk")
    token = csrf_token(body(client.get("/account")))
    long_id = "x" * 300
    for action, event in (("", "client.update"), ("/delete", "client.delete")):
        url = f"/staff/clients/{long_id}{action}"
        assert client.post(url, data={"csrf_token": token}).status_code == 403
        (refused,) = events(app, event, "failure")
        assert refused.subject is None
