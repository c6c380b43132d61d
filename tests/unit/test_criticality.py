"""Criticality: named levels over 0-99, lowered and never raised as it travels, and the front
door's rules that set it from what a request is."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

import herd
from herd._cloud.app import CriticalityRule, CriticalitySpec
from herd._cloud.criticality_rules import CriticalityRules
from herd._model import criticality, routing


def test_levels_are_names_or_numbers_from_0_to_99() -> None:
    assert criticality.parse("critical") == herd.Criticality.CRITICAL == 90
    assert criticality.parse("BEST_EFFORT") == 10
    assert criticality.parse("7") == criticality.parse(7) == 7
    for bad in ("urgent", "100", "-1", "1.5", 100, True):
        with pytest.raises(herd.ConfigurationError):
            criticality.parse(bad)  # type: ignore[arg-type]


def test_an_unmarked_request_is_degraded_and_an_unreadable_one_too() -> None:
    assert herd.current_criticality() == herd.Criticality.DEGRADED
    assert criticality.of({"criticality": "high"}) == criticality.DEFAULT


def test_a_handler_may_lower_it_and_never_raise_it() -> None:
    with herd.routing(criticality="critical"):
        assert herd.routing_context()["criticality"] == "90"
        with herd.criticality("best_effort"):
            assert herd.current_criticality() == 10
            with herd.criticality("critical"):
                assert herd.current_criticality() == 10
            # Nor by removing the entry, which would raise it to the default.
            with herd.routing(criticality=""):
                assert herd.current_criticality() == 10
            with herd.routing(criticality="99"):
                assert herd.current_criticality() == 10
        assert herd.current_criticality() == 90
    with pytest.raises(herd.ConfigurationError), herd.criticality("urgent"):
        pass


def test_it_travels_in_the_routing_header() -> None:
    with herd.routing(bucket="7"), herd.criticality(30) as context:
        assert context.header == "bucket=7,criticality=30"
        assert criticality.of(routing.parse(context.header)) == 30


RULES = CriticalitySpec(
    default="critical",
    rules=[
        CriticalityRule(level="best_effort", header="x-prefetch"),
        CriticalityRule(level="degraded", path="/api/rows", header="x-source", value="tv"),
        CriticalityRule(level="12", path="/batch/"),
    ],
)


@pytest.mark.parametrize(
    ("path", "headers", "level"),
    [
        ("/", {}, "90"),
        ("/api/home", {"x-prefetch": "1"}, "10"),
        ("/api/rows", {"x-source": "tv"}, "50"),
        ("/api/rows", {"x-source": "web"}, "90"),
        ("/batch/nightly", {}, "12"),
    ],
)
def test_the_front_door_takes_the_first_rule_that_matches(
    path: str, headers: dict[str, str], level: str
) -> None:
    request = make_mocked_request("GET", path, headers=headers)
    assert CriticalityRules(RULES).entries(request) == {"criticality": level}


def test_rules_that_cannot_work_are_named() -> None:
    assert RULES.problem() is None
    assert "urgent" in (CriticalitySpec(default="urgent").problem() or "")
    ruleless = CriticalitySpec(rules=[CriticalityRule(level="critical")])
    assert "names a path, a header" in (ruleless.problem() or "")
