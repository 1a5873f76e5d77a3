"""Schema history: each version reads the last one's data and vice versa; refusals name fields."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from core.schemas import schema_path
from core.settings import PROJECT_ROOT
from producers.mapping import feature_to_quake_change
from producers.schema_evolution import (
    field_at_pointer,
    incompatible_diffs,
    refusal_sentence,
    schema_history,
)

FEED = PROJECT_ROOT / "tests" / "data" / "usgs" / "feed_7_day_m1.geojson"
HISTORY = schema_history("quake_change")
CONTEXT = {"source": "usgs_earthquakes", "poll_id": "poll-1", "produced_at_ms": 1_700_000_000_000}

# Refusals as Apicurio Registry 3.0.9 words them (captured from the real server).
NO_DEFAULT = (
    "io.apicurio.registry.rules.RuleViolationException: Incompatible artifact: t-value [AVRO], "
    "num of incompatible diffs: {1}, list of diff types: [depth_class at /fields/7/type/fields/28]"
)
TYPE_CHANGE = (
    "io.apicurio.registry.rules.RuleViolationException: Incompatible artifact: t-value [AVRO], "
    "num of incompatible diffs: {2}, list of diff types: [reader union lacking writer type: "
    "DOUBLE at /fields/7/type/fields/0/type/1, reader type: STRING not compatible with writer "
    "type: LONG at /fields/2/type]"
)


def _parsed(path: Path) -> Any:
    return fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))


def _records(fields_of: Path) -> list[dict[str, Any]]:
    """Real USGS records shaped for the schema in ``fields_of`` (fields it lacks are dropped)."""
    schema = json.loads(fields_of.read_text(encoding="utf-8"))
    quake_fields = {
        f["name"]
        for f in next(f for f in schema["fields"] if f["name"] == "quake")["type"]["fields"]
    }
    features = json.loads(FEED.read_text(encoding="utf-8"))["features"][:200]
    records = [feature_to_quake_change(f, **CONTEXT) for f in features]
    for record in records:
        record["quake"] = {k: v for k, v in record["quake"].items() if k in quake_fields}
    return records


def _round_trip(records: list[dict[str, Any]], writer: Any, reader: Any) -> list[dict[str, Any]]:
    decoded = []
    for record in records:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, writer, record)
        buffer.seek(0)
        decoded.append(fastavro.schemaless_reader(buffer, writer, reader))
    return decoded


def test_history_is_numbered_and_the_latest_is_the_schema_file() -> None:
    assert [path.name for path in HISTORY][:2] == ["v1.avsc", "v2.avsc"]
    latest = schema_path("quake_change.avsc").read_text(encoding="utf-8")
    assert HISTORY[-1].read_text(encoding="utf-8") == latest


@pytest.mark.parametrize(
    ("older", "newer"), list(itertools.pairwise(HISTORY)), ids=lambda p: p.stem
)
def test_new_reader_reads_old_data_backward(older: Path, newer: Path) -> None:
    records = _records(older)
    decoded = _round_trip(records, _parsed(older), _parsed(newer))
    new_fields = {
        f["name"]: f
        for f in next(f for f in json.loads(newer.read_text())["fields"] if f["name"] == "quake")[
            "type"
        ]["fields"]
    }
    for record, seen in zip(records, decoded, strict=True):
        for name, field in new_fields.items():
            expected = record["quake"].get(name, field.get("default"))
            assert seen["quake"][name] == expected, name
        assert {k: v for k, v in seen.items() if k != "quake"} == {
            k: v for k, v in record.items() if k != "quake"
        }


@pytest.mark.parametrize(
    ("older", "newer"), list(itertools.pairwise(HISTORY)), ids=lambda p: p.stem
)
def test_old_reader_reads_new_data_forward(older: Path, newer: Path) -> None:
    records = _records(newer)
    decoded = _round_trip(records, _parsed(newer), _parsed(older))
    old_quake_fields = set(_records(older)[0]["quake"])
    for record, seen in zip(records, decoded, strict=True):
        assert set(seen["quake"]) == old_quake_fields
        assert seen["quake"] == {k: record["quake"][k] for k in old_quake_fields}


def test_v2_only_adds_an_optional_region() -> None:
    v1, v2 = (json.loads(HISTORY[i].read_text()) for i in (0, 1))
    quake_v1 = v1["fields"][7]["type"]["fields"]
    quake_v2 = v2["fields"][7]["type"]["fields"]
    assert quake_v2[: len(quake_v1)] == quake_v1
    assert [f["name"] for f in quake_v2[len(quake_v1) :]] == ["region"]
    region = quake_v2[-1]
    assert region["type"] == ["null", "string"] and region["default"] is None and region["doc"]
    assert {k: v for k, v in v1.items() if k != "fields"} == {
        k: v for k, v in v2.items() if k != "fields"
    }


def test_v2_records_carry_the_region_of_the_place() -> None:
    records = _records(HISTORY[1])
    assert all(r["quake"]["region"] for r in records if r["quake"]["place"])
    assert any(r["quake"]["region"] == "CA" for r in records)


def test_history_refuses_a_gap(tmp_path: Path) -> None:
    folder = tmp_path / "thing"
    folder.mkdir()
    (folder / "v1.avsc").write_text("{}")
    (folder / "v3.avsc").write_text("{}")
    with pytest.raises(ValueError, match="without gaps"):
        schema_history("thing", tmp_path)
    (folder / "v2.avsc").write_text("{}")
    (folder / "v10.avsc").write_text("{}")
    with pytest.raises(ValueError, match=r"\[1, 2, 3, 10\]"):
        schema_history("thing", tmp_path)


def test_pointer_names_the_field() -> None:
    schema = json.loads(HISTORY[-1].read_text())
    assert field_at_pointer(schema, "/fields/7/type/fields/0/type/1") == "quake.mag"
    assert field_at_pointer(schema, "/fields/2/type") == "updated_ms"
    assert field_at_pointer(schema, "/fields/7/type/fields/99") is None
    assert field_at_pointer(schema, "/doc") is None


def test_refusals_are_one_sentence_naming_each_field() -> None:
    evolved = json.loads(HISTORY[-1].read_text())
    evolved["fields"][7]["type"]["fields"].append({"name": "depth_class", "type": "string"})
    sentence = refusal_sentence("t-value", json.dumps(evolved), NO_DEFAULT)
    assert "field quake.depth_class (a new field without a default) is incompatible" in sentence
    assert sentence.count(".") == sentence.count("quake.")  # one sentence, no full stop

    schema_str = HISTORY[-1].read_text()
    diffs = incompatible_diffs(schema_str, TYPE_CHANGE)
    assert [d.field for d in diffs] == ["quake.mag", "updated_ms"]
    assert diffs[0].what == "reader union lacking writer type: DOUBLE"
    sentence = refusal_sentence("t-value", schema_str, TYPE_CHANGE)
    assert (
        "fields quake.mag (reader union" in sentence and "and updated_ms (reader type" in sentence
    )


def test_an_unparsed_refusal_keeps_the_registry_words() -> None:
    sentence = refusal_sentence("t-value", "{}", "Schema being registered is incompatible")
    assert sentence.endswith("Schema being registered is incompatible")
    assert incompatible_diffs("{}", "Schema being registered is incompatible") == []
