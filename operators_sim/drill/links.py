"""A node's links to the registers, which the drill can cut (``operator-offline``).

Every link a node opens (to Telkomsel's register at first, to whichever
register it moves to later) goes through a ``CuttableLink`` sharing one
``Cut`` per node. While the node is cut off, every call fails as if the
network were down (``LinkDown``) and its open feeds are ended, so the node
degrades exactly as it would with its uplink gone: it keeps deciding from
its replica (last-known) and retries until the link is back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb

from ..transport import CeirLink, FeedStream, LinkDown

__all__ = ["Cut", "CuttableLink"]


class Cut:
    """Whether one node is cut off, and its feeds to end when it is."""

    def __init__(self) -> None:
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._feeds: list[FeedStream] = []

    @property
    def active(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            feeds, self._feeds = self._feeds, []
        for feed in feeds:
            feed.cancel()

    def restore(self) -> None:
        self._cut.clear()

    def check(self) -> None:
        if self._cut.is_set():
            raise LinkDown("UNAVAILABLE: cut off by the drill", "UNAVAILABLE")

    def opened(self, feed: FeedStream) -> None:
        with self._lock:
            self._feeds.append(feed)


class _CutFeed:
    def __init__(self, feed: FeedStream, cut: Cut) -> None:
        self._feed = feed
        self._cut = cut

    def __iter__(self) -> Iterator[sync_pb.WatchChangesResponse]:
        for message in self._feed:
            self._cut.check()  # a message that arrives as the cut starts is lost with it
            yield message
        self._cut.check()

    def cancel(self) -> None:
        self._feed.cancel()


class CuttableLink:
    """A ``CeirLink`` that fails while its node's ``Cut`` is active."""

    def __init__(self, link: CeirLink, cut: Cut) -> None:
        self._link = link
        self._cut = cut

    def get_policy(self) -> pb.Policy:
        self._cut.check()
        return self._link.get_policy()

    def snapshot(self, chunk_size: int = 0) -> Iterator[sync_pb.GetSnapshotResponse]:
        self._cut.check()
        return self._link.snapshot(chunk_size)

    def watch(self, after_sequence: int) -> FeedStream:
        self._cut.check()
        feed = _CutFeed(self._link.watch(after_sequence), self._cut)
        self._cut.opened(feed)
        return feed

    def check_batch(
        self, checks: Sequence[check_pb.CheckEquipmentRequest]
    ) -> list[check_pb.CheckEquipmentResponse]:
        self._cut.check()
        return self._link.check_batch(checks)

    def checkpoint(self) -> str:
        self._cut.check()
        return self._link.checkpoint()

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        self._cut.check()
        return self._link.consistency_proof(first_size, second_size)

    def get_custody(self) -> custody_pb.Custody:
        self._cut.check()
        return self._link.get_custody()

    def report_readiness(self, policy_version: int, policy_sha256: str) -> custody_pb.Custody:
        self._cut.check()
        return self._link.report_readiness(policy_version, policy_sha256)

    def reachable(self) -> bool:
        return not self._cut.active and self._link.reachable()

    def close(self) -> None:
        self._link.close()
