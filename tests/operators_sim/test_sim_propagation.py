"""Propagation is timed on live changes only: the changes a node catches up
on when it starts (committed before it was ready) are counted apart, so the
report's "propagation p99" is commit-to-apply for changes made while the
node was running, not the age of the backlog."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from ceir.v1 import types_pb2 as pb
from operators_sim.fake import FakeLink, change
from operators_sim.node import OPERATORS, SyncNode

WL = pb.CHANGE_KIND_WHITELIST_ADDED


def committed(at: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(at * 1e9))
    return stamp


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_backlog_at_start_is_not_timed_and_a_live_change_is() -> None:
    an_hour_ago = time.time() - 3600
    backlog = [
        change(sequence, WL, 35209900000000 + sequence, commit_time=committed(an_hour_ago))
        for sequence in (1, 2, 3)
    ]
    link = FakeLink(log=backlog)
    node = SyncNode(OPERATORS[0], link)
    node.replica.start_merging()
    node.follower.start()
    try:
        wait_until(lambda: node.replica.sequence == 3)
        assert node.follower.ready_since is not None
        assert node.backlog_changes == 3
        assert len(node.propagation) == 0  # an hour-old backlog is not a propagation delay

        # A change the register commits now, after the node was ready.
        link.log.append(change(4, WL, 35209900000004, commit_time=committed(time.time())))
        node.follower.reconnect()  # the fake serves the log's tail on the next watch
        wait_until(lambda: node.replica.sequence == 4)
    finally:
        node.follower.stop()
        node.replica.close()
    assert node.backlog_changes == 3
    assert len(node.propagation) == 1  # the live change, timed from its own commit
