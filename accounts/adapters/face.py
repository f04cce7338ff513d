"""Face checks (real-name level 4): is the person in front of the camera the holder of
this document, by comparison with the registry photo?

``FaceVerifier`` is the interface. ``DevelopmentFaceVerifier`` is deterministic and for
development only (start-up says so): it answers from the image bytes, not a face.
``HttpFaceVerifier`` asks the face-verification service over HTTP (``accounts.remote``;
the wire contract is in docs/architecture.md).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from config import redact_url
from idp.core.remote import MalformedAnswer, RemoteUnavailable, SignedClient, optional_text

# What the development adapter treats as "not the same person": an image containing
# this marker (so tests and demos can show a refusal deterministically).
DEVELOPMENT_MISMATCH_MARKER = b"FACE-MISMATCH"
MAX_IMAGE_BYTES = 4 * 1024 * 1024
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class FaceUnavailable(Exception):
    """The face service could not answer; the reason is for operators (no personal
    data, no image)."""


class UnusableImage(ValueError):
    """Not a JPEG or PNG image, empty, or too large."""


@dataclass(frozen=True)
class FaceResult:
    matched: bool
    # the service's similarity score (0-1) if it gives one, and its reference for this
    # check (kept as evidence)
    score: float | None = None
    reference: str | None = None


class FaceVerifier(Protocol):
    source: str

    def compare(self, number: str, name: str, image: bytes) -> FaceResult:
        """Compare ``image`` (JPEG or PNG, already checked with ``check_image``) with the
        registry photo of document ``number`` held by ``name``; raise
        ``FaceUnavailable`` when the service cannot answer."""
        ...


def check_image(image: bytes) -> bytes:
    if not image:
        raise UnusableImage("empty")
    if len(image) > MAX_IMAGE_BYTES:
        raise UnusableImage("too large")
    if not image.startswith(IMAGE_SIGNATURES):
        raise UnusableImage("not a JPEG or PNG image")
    return image


class DevelopmentFaceVerifier:
    """Development only: matches any image unless it contains
    ``DEVELOPMENT_MISMATCH_MARKER``. It compares no faces."""

    source = "face:development"

    def compare(self, number: str, name: str, image: bytes) -> FaceResult:  # noqa: ARG002
        matched = DEVELOPMENT_MISMATCH_MARKER not in image
        digest = hashlib.sha256(image).hexdigest()[:16]
        return FaceResult(
            matched=matched, score=0.99 if matched else 0.12, reference=f"dev-{digest}"
        )


class HttpFaceVerifier:
    """The face-verification service: ``POST <face_url>/v1/compare`` with
    ``{"number", "name", "image": base64}``, answered by ``{"matched": bool, "score":
    number in 0..1 | null, "reference": str | null}``. Anything else is
    ``FaceUnavailable``."""

    def __init__(self, client: SignedClient) -> None:
        self._client = client
        self.source = ("face:" + redact_url(client.service.url))[:200]  # Verification.source

    def compare(self, number: str, name: str, image: bytes) -> FaceResult:
        payload = {
            "number": number,
            "name": name,
            "image": base64.b64encode(image).decode("ascii"),
        }
        try:
            return self._client.post_json("/v1/compare", payload, _face_result)
        except RemoteUnavailable as exc:
            raise FaceUnavailable(str(exc)) from None


def _face_result(answer: Any) -> FaceResult:
    if not isinstance(answer, dict) or not isinstance(answer.get("matched"), bool):
        raise MalformedAnswer("matched")
    score = answer.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise MalformedAnswer("score")
        if not 0 <= score <= 1:
            raise MalformedAnswer("score")
        score = float(score)
    return FaceResult(
        matched=answer["matched"], score=score, reference=optional_text(answer, "reference")
    )
