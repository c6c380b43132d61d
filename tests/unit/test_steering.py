"""The global front door's steering: home regions, weights, health (no I/O)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from herd._cloud.regions.steering import Steering

VISITORS = [str(v) for v in range(1, 5001)]


def shares(steering: Steering) -> Counter[str]:
    return Counter(steering.order(v)[0] for v in VISITORS)


def test_home_is_the_named_region_else_by_bucket_over_the_weights() -> None:
    steering = Steering(["us", "eu"], {"us": 80, "eu": 20})
    assert steering.home("7", named="eu") == "eu"
    assert steering.home("7", named="mars") in ("us", "eu")
    homes = Counter(steering.home(v) for v in VISITORS)
    assert 0.75 < homes["us"] / len(VISITORS) < 0.85
    # Stable: the same visitor, the same home.
    assert all(steering.home(v) == steering.home(v) for v in VISITORS[:50])


def test_everyone_goes_home_while_the_weights_are_the_app_files() -> None:
    steering = Steering(["us", "eu"], {})
    assert all(steering.order(v)[0] == steering.home(v) for v in VISITORS)


def test_a_lower_weight_moves_that_share_of_its_home_visitors_and_keeps_them_moved() -> None:
    steering = Steering(["us", "eu"], {"us": 50, "eu": 50})
    at_home = {v for v in VISITORS if steering.home(v) == "us"}
    kept = []
    for weight in (50, 38, 25, 12, 0):
        steering.set_weight("us", weight)
        staying = {v for v in at_home if steering.order(v)[0] == "us"}
        assert abs(len(staying) / len(at_home) - weight / 50) < 0.05
        kept.append(staying)
    # Each step moves more visitors and brings none back.
    assert all(later <= earlier for earlier, later in itertools.pairwise(kept))
    assert shares(steering)["us"] == 0
    # eu's visitors never moved.
    assert all(steering.order(v)[0] == "eu" for v in VISITORS if steering.home(v) == "eu")


def test_an_unhealthy_region_gets_nobody_first_and_is_the_last_resort() -> None:
    steering = Steering(["us", "eu", "ap"], {})
    steering.healthy["us"] = False
    assert shares(steering)["us"] == 0
    moved = Counter(steering.order(v)[0] for v in VISITORS if steering.home(v) == "us")
    # Spread over the others by their weights.
    assert set(moved) == {"eu", "ap"} and min(moved.values()) > 0.4 * max(moved.values())
    assert all(steering.order(v)[-1] == "us" for v in VISITORS[:100])


def test_with_every_region_down_a_request_still_has_somewhere_to_go() -> None:
    steering = Steering(["us", "eu"], {})
    steering.healthy = {"us": False, "eu": False}
    assert all(sorted(steering.order(v)) == ["eu", "us"] for v in VISITORS[:20])


def test_weights_outside_0_to_100_or_unknown_regions_are_refused() -> None:
    steering = Steering(["us", "eu"], {})
    with pytest.raises(ValueError):
        steering.set_weight("us", 101)
    with pytest.raises(ValueError):
        steering.set_weight("mars", 10)
