"""What the interoperability tests share: Node.js with the locked npm packages
(panva's openid-client and oidc-provider, ``npm ci`` when missing), reading a page's
forms like a browser, and serving a WSGI app on a loopback port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.e2e.servers import free_port

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

HERE = Path(__file__).resolve().parent
PACKAGES = ("openid-client", "oidc-provider")
NODE_MAJOR_MIN = 20
NPM_CI = ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--fetch-retries=1"]
NPM_CI_TIMEOUT = 90  # within pytest-timeout (120 s per test, fixtures included)


def unavailable(message: str, required_by: str = "IDP_TEST_INTEROP") -> NoReturn:
    """Skip, or fail when the environment variable ``required_by`` says ``required``."""
    if os.environ.get(required_by) == "required":
        pytest.fail(f"{message}; {required_by}=required", pytrace=False)
    pytest.skip(message)


def _installed(directory: Path, packages: tuple[str, ...]) -> bool:
    """node_modules holds the versions package-lock.json pins."""
    locked = json.loads((directory / "package-lock.json").read_text())["packages"]
    for package in packages:
        manifest = directory / "node_modules" / package / "package.json"
        if not manifest.exists():
            return False
        version = locked[f"node_modules/{package}"]["version"]
        if json.loads(manifest.read_text())["version"] != version:
            return False
    return True


def require_node(
    directory: Path = HERE,
    packages: tuple[str, ...] = PACKAGES,
    required_by: str = "IDP_TEST_INTEROP",
) -> str:
    """The node binary, with the locked ``packages`` of ``directory`` installed there
    (``npm ci`` if needed); skipped without them, unless ``required_by`` requires."""
    executable = shutil.which("node")
    if executable is None:
        unavailable("node is not installed (Node.js 20 or newer is needed)", required_by)
    version = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        unavailable(f"cannot tell the version of {executable} ({version!r})", required_by)
    if major < NODE_MAJOR_MIN:
        unavailable(
            f"node {version} is too old; the npm packages need {NODE_MAJOR_MIN}+", required_by
        )
    if not _installed(directory, packages):
        npm = shutil.which("npm")
        if npm is None:
            unavailable(
                f"{directory}/node_modules is missing and npm is not installed", required_by
            )
        try:
            result = subprocess.run(
                [npm, *NPM_CI],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            unavailable(f"npm ci in {directory} took longer than {NPM_CI_TIMEOUT} s", required_by)
        if result.returncode != 0 or not _installed(directory, packages):
            unavailable(
                f"npm ci in {directory} failed:\n{result.stdout}{result.stderr}", required_by
            )
    return executable


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    """The page's forms with their hidden fields (values unescaped)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("action", "")))
        elif (
            tag == "input" and self.forms and values.get("type") == "hidden" and values.get("name")
        ):
            self.forms[-1].fields[values["name"]] = values.get("value", "")


def page_forms(html: str) -> dict[str, Form]:
    parser = _FormParser()
    parser.feed(html)
    return {form.action: form for form in parser.forms}


class _Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's name
        pass


@contextmanager
def serving(app: WSGIApplication) -> Iterator[str]:
    """``app`` served on a free loopback port (a thread); its base URL. Stopped on exit."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
