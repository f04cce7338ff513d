"""Real-name level 4: a face photo compared with the registry photo, through the page
(upload limits, refusals, outages, rate limit, the level-3 prerequisite), and the
``next`` / ``level`` parameters of the real-name pages."""

from __future__ import annotations

import io
import logging
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse, encode_multipart

from accounts.adapters.face import (
    DEVELOPMENT_MISMATCH_MARKER,
    MAX_IMAGE_BYTES,
    FaceResult,
    FaceUnavailable,
)
from accounts.realname.models import Verification, VerificationMethod
from config import Settings
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from tests.accounts.test_realname import (
    ALICE_ID,
    ALICE_NAME,
    BOB_ID,
    REGISTRY_CSV,
    audit_events,
    level,
    load_registry,
    verify,
)
from tests.support import AppFactory, create_user, csrf_token, sign_in, submit
from tests.support import text as body

FACE = "/account/realname/face"
# recognisable bytes inside the photo, to show it is kept nowhere
PHOTO_TAG = b"PHOTO-CONTENT-7f3a9c"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + PHOTO_TAG + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + PHOTO_TAG + b"\x00" * 64
OTHER_FACE = JPEG + DEVELOPMENT_MISMATCH_MARKER


@pytest.fixture
def alice(app: Flask) -> None:
    """Alice, verified against the registry (level 3)."""
    create_user(app)
    load_registry(app, REGISTRY_CSV + f"{BOB_ID},李大明\n")
    verify(app, "alice", ALICE_NAME, ALICE_ID)


def upload(
    client: FlaskClient, image: bytes, *, filename: str = "me.jpg", url: str = FACE, **fields: str
) -> TestResponse:
    token = csrf_token(body(client.get(url)))
    return post_multipart(client, url, {"csrf_token": token, **fields}, image, filename)


def post_multipart(
    client: FlaskClient,
    url: str,
    fields: dict[str, str],
    image: bytes | None = None,
    filename: str = "me.jpg",
) -> TestResponse:
    """The body built in memory (the test client would spool a large one to a temporary
    file that it never closes)."""
    values: dict[str, object] = dict(fields)
    if image is not None:
        values["photo"] = FileStorage(io.BytesIO(image), filename=filename)
    boundary, payload = encode_multipart(values)
    return client.post(url, data=payload, content_type=f"multipart/form-data; boundary={boundary}")


def face_verifications(app: Flask) -> list[Verification]:
    with app.app_context():
        return list(
            db().scalars(select(Verification).where(Verification.method == VerificationMethod.FACE))
        )


def face_events(app: Flask) -> list[tuple[str, str]]:
    return [
        (e.outcome, str(e.details.get("reason", "")))
        for e in audit_events(app, "realname.verify")
        if e.details["method"] == "face"
    ]


class DownVerifier:
    source = "face:test-down"

    def compare(self, _number: str, _name: str, _image: bytes) -> FaceResult:
        raise FaceUnavailable("timed out after 10 s")


class SeeingVerifier:
    """Remembers what it was asked (the decrypted number and name)."""

    source = "face:test"

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def compare(self, number: str, name: str, _image: bytes) -> FaceResult:
        self.asked.append((number, name))
        return FaceResult(matched=True, score=0.97, reference="ref-42")


def test_a_matching_face_gives_level_4(
    app: Flask,
    client: FlaskClient,
    settings: Settings,
    clock: FrozenClock,
    alice: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sign_in(client)
    page = client.get(FACE)
    assert page.status_code == 200
    assert 'name="photo"' in body(page)
    assert 'enctype="multipart/form-data"' in body(page)
    with caplog.at_level(logging.DEBUG):
        done = upload(client, JPEG)
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/realname"
    assert level(app, "alice") == 4
    (verification,) = face_verifications(app)
    assert verification.level == 4
    assert verification.source == "face:development"
    assert (verification.evidence_ref or "").startswith("dev-")
    assert verification.expires_at is not None
    assert (verification.expires_at - clock.now()).days == settings.face_level_valid_days
    assert face_events(app) == [("success", "")]
    assert "real-name level 4" in body(client.get("/account/realname"))
    # the photo is kept nowhere: not in the database, not in the logs
    with app.app_context():
        dumped = " ".join(
            str(value)
            for table in ("users", "identities", "verifications", "audit_events")
            for row in db().execute(text(f"SELECT * FROM {table}")).mappings()  # noqa: S608
            for value in row.values()
        )
    for secret in (PHOTO_TAG.decode(), ALICE_ID, ALICE_NAME):
        assert secret not in dumped
        assert secret not in caplog.text


def test_png_is_accepted_and_the_service_gets_the_decrypted_identity(
    app: Flask, alice: None, make_app: AppFactory
) -> None:
    verifier = SeeingVerifier()
    client = make_app(face=verifier).test_client()
    sign_in(client)
    assert upload(client, PNG, filename="me.png").status_code == 302
    assert verifier.asked == [(ALICE_ID, ALICE_NAME)]
    (verification,) = face_verifications(app)
    assert (verification.source, verification.evidence_ref) == ("face:test", "ref-42")


def test_another_face_is_refused_and_may_try_again(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    sign_in(client)
    refused = upload(client, OTHER_FACE)
    assert refused.status_code == 400
    assert "does not match" in body(refused)
    assert level(app, "alice") == 3
    assert face_verifications(app) == []
    assert face_events(app) == [("failure", "mismatch")]
    assert upload(client, JPEG).status_code == 302
    assert level(app, "alice") == 4


def test_a_face_service_outage_is_a_clear_503(
    app: Flask, alice: None, make_app: AppFactory
) -> None:
    client = make_app(face=DownVerifier()).test_client()
    sign_in(client)
    down = upload(client, JPEG)
    assert down.status_code == 503
    assert "cannot be reached" in body(down)
    assert level(app, "alice") == 3
    assert face_verifications(app) == []
    assert face_events(app) == [("failure", "face_unavailable")]


@pytest.mark.parametrize(
    ("image", "filename"),
    [
        (b"GIF89a" + b"\x00" * 32, "me.gif"),
        (b"%PDF-1.7", "me.jpg"),
        (b"", "me.jpg"),
        (b"\xff\xd8\xff" + b"\x00" * MAX_IMAGE_BYTES, "big.jpg"),  # just over the limit
    ],
    ids=["gif", "pdf", "empty", "too-large"],
)
def test_an_unusable_image_is_a_form_error(
    app: Flask, client: FlaskClient, alice: None, image: bytes, filename: str
) -> None:
    sign_in(client)
    response = upload(client, image, filename=filename)
    assert response.status_code == 400
    assert "JPEG or PNG photo" in body(response)
    assert 'aria-invalid="true"' in body(response)
    assert face_events(app) == []  # not sent to the face service, nor counted


def test_no_photo_is_a_form_error(app: Flask, client: FlaskClient, alice: None) -> None:
    sign_in(client)
    token = csrf_token(body(client.get(FACE)))
    response = client.post(FACE, data={"csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose a photo" in body(response)


def test_a_body_over_the_upload_limit_is_refused_cleanly(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    sign_in(client)
    response = upload(client, JPEG + b"\x00" * (MAX_IMAGE_BYTES + 128 * 1024))
    assert response.status_code == 413
    assert "too large" in body(response)
    assert level(app, "alice") == 3


def test_only_the_face_page_takes_large_bodies(
    app: Flask, client: FlaskClient, settings: Settings, alice: None
) -> None:
    sign_in(client)
    token = csrf_token(body(client.get(FACE)))
    padding = "x" * (settings.max_request_bytes + 1024)
    response = client.post(
        "/account/realname",
        data={"csrf_token": token, "name": ALICE_NAME, "id_number": ALICE_ID, "pad": padding},
    )
    assert response.status_code == 413
    multipart = client.post(
        "/account/realname",
        data={"csrf_token": token, "photo": (io.BytesIO(padding.encode()), "x.jpg")},
        content_type="multipart/form-data",
    )
    assert multipart.status_code == 413


def test_face_checks_are_limited_per_account(
    app: Flask, client: FlaskClient, settings: Settings, alice: None
) -> None:
    sign_in(client)
    for _ in range(settings.face_checks_per_account_per_day):
        assert upload(client, OTHER_FACE).status_code == 400
    limited = upload(client, JPEG)
    assert limited.status_code == 429
    assert "Too many face checks" in body(limited)
    assert level(app, "alice") == 3


def test_level_3_comes_first(app: Flask, client: FlaskClient, settings: Settings) -> None:
    create_user(app)
    sign_in(client)
    page = client.get(FACE)
    assert page.status_code == 200
    assert "level 3" in body(page)
    assert 'name="photo"' not in body(page)
    token = csrf_token(body(client.get("/account/realname")))
    refused = client.post(
        FACE,
        data={"csrf_token": token, "photo": (io.BytesIO(JPEG), "me.jpg")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 403
    assert level(app, "alice") == 1
    assert face_events(app) == []


def test_a_self_declared_identity_is_not_enough(
    app: Flask, client: FlaskClient, settings: Settings
) -> None:
    from tests.accounts.test_realname_phone import confirm, last_code, send

    create_user(app)
    send(app)
    confirm(app, last_code(settings))
    assert level(app, "alice") == 2
    sign_in(client)
    assert 'name="photo"' not in body(client.get(FACE))


def test_the_face_page_needs_a_session_and_a_csrf_token(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    assert client.get(FACE).status_code == 302
    sign_in(client)
    forged = client.post(
        FACE, data={"photo": (io.BytesIO(JPEG), "me.jpg")}, content_type="multipart/form-data"
    )
    assert forged.status_code == 400
    assert level(app, "alice") == 3


# -- next and level ----------------------------------------------------------------------

TARGET = "/authorize/continue?rid=abc123"


def test_next_is_followed_after_level_4(app: Flask, client: FlaskClient, alice: None) -> None:
    sign_in(client)
    url = FACE + "?" + urlencode({"next": TARGET})
    assert 'name="next"' in body(client.get(url))
    done = upload(client, JPEG, url=url, next=TARGET)
    assert done.status_code == 302
    assert done.headers["Location"] == TARGET


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_an_off_site_next_is_ignored(
    app: Flask, client: FlaskClient, alice: None, target: str
) -> None:
    sign_in(client)
    done = upload(client, JPEG, next=target)
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/realname"


def test_the_level_3_form_follows_next(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    load_registry(app)
    sign_in(client)
    url = "/account/realname?" + urlencode({"next": TARGET, "level": "3"})
    page = client.get(url)
    assert 'name="next"' in body(page)
    done = submit(
        client,
        "/account/realname",
        {"name": ALICE_NAME, "id_number": ALICE_ID, "next": TARGET, "level": "3"},
        form_url=url,
    )
    assert done.status_code == 302
    assert done.headers["Location"] == TARGET


def test_the_page_offers_only_the_ways_above_the_level(
    app: Flask, client: FlaskClient, alice: None
) -> None:
    sign_in(client)
    page = body(client.get("/account/realname?" + urlencode({"level": "4", "next": TARGET})))
    assert "The service you are signing in to needs level 4." in page
    assert "/account/realname/phone" not in page  # level 2: below
    assert 'name="id_number"' not in page  # level 3: reached
    assert "/account/realname/face?next=" in page  # level 4, keeping next
    assert "service counter with your identity card" in page  # level 5
    assert "needs level" not in body(client.get("/account/realname?level=9"))


def test_a_new_account_sees_every_way(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    sign_in(client)
    page = body(client.get("/account/realname"))
    for expected in (
        "/account/realname/phone",
        'name="id_number"',
        "/account/realname/face",
        "service counter",
    ):
        assert expected in page
    assert "/account/realname" in body(client.get("/account"))
