"""dnx.core.documents: the one mechanism behind every typed reader, writer and JSON Schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest

from dnx.core.documents import FieldProblem, SchemaError, doc_field, json_schema, read_document, to_json

jsonschema = pytest.importorskip("jsonschema")


@dataclass(frozen=True)
class Inner:
    size: int = doc_field(minimum=1)
    tags: tuple[str, ...] | None = doc_field(None, maxItems=2)


@dataclass(frozen=True)
class Doc:
    """A test document."""

    kind: Literal["a", "b"]
    inner: Inner
    dims: tuple[int | Literal["N"], ...] = doc_field(items={"minimum": 1})
    ratio: float | None = doc_field(None, exclusiveMinimum=0)
    note: str | None = doc_field(None, write_null=True)
    flag: bool = False
    blob: dict[str, Any] | None = None
    extra: dict[str, Any] = doc_field({})

    def check(self) -> None:
        if self.kind == "b" and self.ratio is None:
            raise FieldProblem("ratio", "is needed when kind is \"b\"")


GOOD = {"kind": "a", "inner": {"size": 3, "tags": ["x"]}, "dims": ["N", 3], "ratio": 0.5, "note": None,
        "flag": True, "blob": {"any": [1, {"thing": None}]}, "later": 1}


def read(data):
    return read_document(Doc, data, "doc.json", "make it again")


def test_a_valid_document_round_trips_and_keeps_unknown_keys():
    doc = read(GOOD)
    assert doc.inner == Inner(3, ("x",)) and doc.dims == ("N", 3) and doc.extra == {"later": 1}
    assert to_json(doc) == GOOD


def test_optional_fields_are_written_only_when_set_unless_always_written():
    doc = read({"kind": "a", "inner": {"size": 1}, "dims": []})
    assert to_json(doc) == {"kind": "a", "inner": {"size": 1}, "dims": [], "note": None, "flag": False}


def test_integral_floats_are_integers_and_bools_are_not_numbers():
    assert read({**GOOD, "inner": {"size": 3.0}}).inner.size == 3
    with pytest.raises(SchemaError, match=r"inner.size must be an integer, got true"):
        read({**GOOD, "inner": {"size": True}})


@pytest.mark.parametrize("change, field, problem", [
    ({"kind": "c"}, "kind", 'must be one of "a", "b", got "c"'),
    ({"inner": {"size": 0}}, "inner.size", "must be >= 1, got 0"),
    ({"inner": {"size": "3"}}, "inner.size", 'must be an integer, got "3"'),
    ({"inner": {"size": 1, "tags": ["a", "b", "c"]}}, "inner.tags", "takes at most 2 item(s), got 3"),
    ({"inner": {"size": 1, "tags": ["a", 2]}}, "inner.tags[1]", "must be a string, got 2"),
    ({"inner": {"size": 1, "colour": "red"}}, "inner.colour", "is not a field of this document"),
    ({"dims": ["N", 0]}, "dims[1]", "must be >= 1, got 0"),
    ({"dims": ["M"]}, "dims[0]", 'must be an integer or one of "N", got "M"'),
    ({"ratio": 0}, "ratio", "must be > 0, got 0"),
    ({"ratio": float("nan")}, "ratio", "must be a finite number, got NaN"),
    ({"flag": "yes"}, "flag", 'must be true or false, got "yes"'),
    ({"blob": []}, "blob", "must be an object or null, got []"),
    ({"kind": "b", "ratio": None}, "ratio", 'is needed when kind is "b"'),
])
def test_each_bad_field_is_one_line_naming_the_file_and_the_field(change, field, problem):
    with pytest.raises(SchemaError) as info:
        read({**GOOD, **change})
    assert info.value.field == field
    assert str(info.value) == f"doc.json: {field} {problem}; make it again"


def test_missing_fields_and_non_objects():
    with pytest.raises(SchemaError, match=r"^doc.json: inner is missing; make it again$"):
        read({"kind": "a", "dims": []})
    with pytest.raises(SchemaError, match=r"^doc.json: must be an object, got \[1\]"):
        read([1])


def test_the_json_schema_states_the_same_rules():
    schema = json_schema(Doc, "urn:test:1", "test/1")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(GOOD)
    assert schema["description"] == "A test document." and schema["additionalProperties"] is True
    assert schema["$defs"]["Inner"]["additionalProperties"] is False
    for change in ({"kind": "c"}, {"inner": {"size": 0}}, {"dims": ["M"]}, {"ratio": 0}, {"flag": "yes"},
                   {"inner": {"size": 1, "tags": ["a", 2]}}, {"inner": {"size": 1, "colour": "red"}}):
        assert not validator.is_valid({**GOOD, **change}), change
