"""Real-name level 4: the person is compared with the registry photo of the document the
account was confirmed with (design.md section 5; docs/decisions/0018-level-2-and-4.md).

In production the photo comes from the mobile app's SDK, which also checks liveness;
the web page's upload is the fallback. The image is handed to the face service and
dropped: it is never stored or logged, and audit events carry no personal data.
"""

from __future__ import annotations

from accounts.adapters.face import (
    MAX_IMAGE_BYTES,
    FaceUnavailable,
    FaceVerifier,
    UnusableImage,
    check_image,
)
from accounts.errors import N_, AccountError
from accounts.people.models import User
from accounts.realname.models import Verification, VerificationMethod
from accounts.realname.services import RealNameService
from idp.core.store import Store
from idp.core.throttle import RateLimit, Throttled

FACE_LEVEL = 4


class NeedsConfirmedIdentity(AccountError):
    default_message = N_(
        "A face check compares you with the photo the population registry holds for your "
        "document, so your identity must first be verified against the registry (level 3)."
    )


class InvalidImage(AccountError):
    default_message = N_("Choose a JPEG or PNG photo of your face of at most %(megabytes)d MB.")


class FaceMismatch(AccountError):
    default_message = N_(
        "The photo does not match the registry photo of your document. Try again with a "
        "clear, well-lit photo of your face looking at the camera."
    )


class FaceDown(AccountError):
    default_message = N_(
        "The face check service cannot be reached just now. Your level is unchanged; "
        "please try again later."
    )


class TooManyFaceChecks(AccountError):
    default_message = N_("Too many face checks today. Try again tomorrow.")


class FaceCheckService:
    def __init__(
        self,
        realname: RealNameService,
        store: Store,
        verifier: FaceVerifier,
        *,
        checks_per_day: int,
    ) -> None:
        self._realname = realname
        self._store = store
        self._verifier = verifier
        self._checks_per_day = checks_per_day

    def eligible(self, user: User) -> bool:
        """Whether the account has a registry-confirmed identity to compare with."""
        return self._realname.confirmed_identity(user) is not None

    def verify(self, user: User, image: bytes) -> Verification:
        """Compare ``image`` with the registry photo; on a match record level 4."""
        identity = self._realname.confirmed_identity(user)
        if identity is None:
            raise NeedsConfirmedIdentity()
        try:
            check_image(image)
        except UnusableImage:
            raise InvalidImage(megabytes=max_image_megabytes()) from None
        try:
            RateLimit(
                self._store,
                "realname-face",
                limit=self._checks_per_day,
                window_seconds=24 * 3600,
            ).hit(user.public_id)
        except Throttled:
            raise TooManyFaceChecks() from None
        number = self._realname.number_of(identity)
        name = self._realname.name_of(identity)
        try:
            result = self._verifier.compare(number, name, image)
        except FaceUnavailable as exc:
            self._refuse(user, "face_unavailable", error=str(exc)[:200])
            raise FaceDown() from None
        if not result.matched:
            self._refuse(user, "mismatch", reference=(result.reference or "")[:200])
            raise FaceMismatch()
        # the identity it rests on is the confirmed one, unchanged
        return self._realname.record_verification(
            user,
            method=VerificationMethod.FACE,
            level=FACE_LEVEL,
            source=self._verifier.source,
            evidence_ref=result.reference,
        )

    def _refuse(self, user: User, reason: str, **details: str) -> None:
        self._realname.record_refusal(
            user, method=VerificationMethod.FACE, reason=reason, **details
        )


def max_image_megabytes() -> int:
    return MAX_IMAGE_BYTES // (1024 * 1024)
