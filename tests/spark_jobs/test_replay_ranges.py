"""Resolving a replay's Kafka range to concrete offsets, and the bronze positions it replaces."""

from __future__ import annotations

import pytest

from core.errors import UserFacingError
from core.kafka_topics import clamp_offsets
from spark_jobs.replay import KafkaRange, _bound, positions_predicate

MARKS = {0: (10, 100), 1: (0, 50)}


def test_earliest_and_latest_are_the_watermarks() -> None:
    assert clamp_offsets(MARKS, {0: -2, 1: -2}, {0: -1, 1: -1}) == {0: (10, 100), 1: (0, 50)}


def test_offsets_outside_the_log_are_clamped_and_an_inverted_range_is_empty() -> None:
    assert clamp_offsets(MARKS, {0: 5, 1: 60}, {0: 500, 1: 40}) == {0: (10, 100), 1: (50, 50)}


def test_no_record_at_or_after_a_timestamp_means_the_end_of_the_log() -> None:
    # offsets_for_times answers -1 when no record is that new: nothing to start from,
    # and everything up to the end.
    assert clamp_offsets(MARKS, {0: 42, 1: -1}, {0: -1, 1: 7}) == {0: (42, 100), 1: (50, 50)}


def test_bounds_from_the_command_line_forms() -> None:
    assert _bound(None, None, "earliest", "t") == "earliest"
    assert _bound(None, 1_700_000_000_000, "latest", "t") == 1_700_000_000_000
    assert _bound('{"t": {"0": 5, "1": -2}}', None, "earliest", "t") == {0: 5, 1: -2}
    assert _bound("latest", None, "earliest", "t") == "latest"


def test_offsets_naming_another_topic_get_one_sentence() -> None:
    with pytest.raises(UserFacingError, match="do not name the topic 't'"):
        _bound('{"other": {"0": 5}}', None, "earliest", "t")
    with pytest.raises(UserFacingError, match="not valid"):
        KafkaRange(starting_offsets="[1, 2]").resolve(None, "t")  # type: ignore[arg-type]


def test_positions_predicate_covers_exactly_the_ranges() -> None:
    predicate = positions_predicate("t", {0: (10, 100), 1: (50, 50)})
    assert predicate == (
        "(kafka_topic = 't' AND kafka_partition = 0 AND kafka_offset >= 10 AND kafka_offset < 100)"
    )
    assert positions_predicate("t", {0: (3, 3)}) == "false"
