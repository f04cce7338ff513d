"""The fuzz drives every endpoint: a new route without a fuzz target fails here."""

from __future__ import annotations

from flask import Flask

from tests.fuzz.endpoints import ALL_TARGETS


def test_every_rule_of_the_url_map_is_fuzzed(app: Flask) -> None:
    fuzzed = {target.rule: set(target.methods) for target in ALL_TARGETS}
    missing = []
    for rule in app.url_map.iter_rules():
        methods = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        if rule.rule not in fuzzed or not methods <= fuzzed[rule.rule]:
            missing.append(f"{rule.rule} {sorted(methods)}")
    assert not missing, f"add these to tests/fuzz/endpoints.py: {missing}"


def test_every_target_is_a_rule(app: Flask) -> None:
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert [target.rule for target in ALL_TARGETS if target.rule not in rules] == []
