"""The rebuild's garbage-collector settings: changed for the replay, given back after it."""

from __future__ import annotations

import gc

import pytest

from bank_projector.rebuild import REPLAY_GC_THRESHOLD, fewer_collections


def test_the_replay_collects_rarely_and_leaves_the_collector_as_it_found_it() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == REPLAY_GC_THRESHOLD
        assert gc.get_freeze_count() > 0  # the heap made before the replay is not rescanned
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_failed_replay_also_gives_the_collector_back() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("the store went away")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
