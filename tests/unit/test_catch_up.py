"""The durability experiment's probes of the engine, on JetStream's stream info: a returning
member has caught up when every stream's leader reports its copy current; an election is over
when every stream has a leader other than the member killed."""

from __future__ import annotations

from nats.js.api import ClusterInfo, PeerInfo

from herd_tools.experiments.durability_engine import leaderless, not_current


def placement(leader: str, copies: dict[str, bool] | None = None) -> ClusterInfo:
    """A stream led by `leader` with a follower copy per entry of `copies` (its `current`)."""
    return ClusterInfo(
        leader=leader,
        replicas=[
            PeerInfo(name=name, current=current, offline=False)
            for name, current in (copies or {}).items()
        ],
    )


def test_a_member_is_caught_up_once_every_leader_calls_its_copy_current() -> None:
    clusters = {
        "LOG_history_plays": placement("nats-a", {"nats-b": True, "nats-c": True}),
        "KV_history_plays-newest": placement("nats-c", {"nats-a": True, "nats-b": True}),
    }
    assert not_current("nats-b", clusters) == []


def test_a_copy_not_current_offline_or_a_stream_without_a_leader_is_behind() -> None:
    offline = placement("nats-a", {"nats-b": True})
    assert offline.replicas is not None
    offline.replicas[0].offline = True
    clusters = {
        "LOG_history_plays": placement("nats-a", {"nats-b": False, "nats-c": True}),
        "EVENTS_rated": offline,
        "LOG_merch_ratings": None,  # no leader answered
        "EVENTS_played": placement("nats-c", {"nats-a": True, "nats-b": True}),
    }
    assert not_current("nats-b", clusters) == [
        "LOG_history_plays",
        "EVENTS_rated",
        "LOG_merch_ratings",
    ]


def test_the_member_leading_a_stream_or_without_a_copy_of_it_is_not_behind_there() -> None:
    clusters = {
        "LOG_history_plays": placement("nats-b", {"nats-a": False, "nats-c": False}),
        "LOG_single": placement("nats-a"),
    }
    assert not_current("nats-b", clusters) == []


def test_a_stream_is_leaderless_until_one_other_than_the_killed_member_leads_it() -> None:
    clusters = {
        "LOG_history_plays": placement("nats-b", {"nats-a": True}),
        "KV_history_plays-newest": None,  # no answer: no leader yet
        "EVENTS_played": placement("", {"nats-a": True, "nats-c": True}),
        "LOG_merch_ratings": placement("nats-c", {"nats-a": True, "nats-b": False}),
    }
    assert leaderless("nats-b", clusters, member_back=False) == [
        "LOG_history_plays",
        "KV_history_plays-newest",
        "EVENTS_played",
    ]
    # Back, the killed member may win an election: it leads the log again.
    assert leaderless("nats-b", clusters, member_back=True) == [
        "KV_history_plays-newest",
        "EVENTS_played",
    ]
