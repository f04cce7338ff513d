"""Fail unless the suite really ran on PostgreSQL + Redis and in a browser.

Reads pytest's JUnit XML: tests parametrised with the production back end must have
run and passed (none skipped), and so must the browser tests.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter

MIN_PRODUCTION_TESTS = 50
# "production" as one of the test's parameter ids: [production], [x-production-y]
PRODUCTION = re.compile(r"[\[-]production[\]-]")


def main(path: str) -> int:
    root = ET.parse(path).getroot()  # noqa: S314 - our own test report
    outcomes: Counter[str] = Counter()
    problems = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if PRODUCTION.search(name):
            kind = "production"
        elif "test_browser" in name:
            kind = "browser"
        elif "test_openid_client" in name:
            kind = "interop"
        else:
            continue
        if case.find("skipped") is not None:
            problems.append(f"skipped: {name}")
            outcomes[f"{kind} skipped"] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            outcomes[f"{kind} failed"] += 1
        else:
            outcomes[f"{kind} passed"] += 1
    print(f"check_backends: {dict(sorted(outcomes.items()))}")
    if outcomes["production passed"] < MIN_PRODUCTION_TESTS:
        problems.append(
            f"only {outcomes['production passed']} tests passed on PostgreSQL + Redis "
            f"(expected at least {MIN_PRODUCTION_TESTS})"
        )
    if outcomes["browser passed"] == 0:
        problems.append("no browser test passed")
    if outcomes["interop passed"] == 0:
        problems.append("no openid-client interoperability test passed")
    for problem in problems:
        print(f"check_backends: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
