"""Typed JSON documents: a dataclass is the schema, read by one validating reader and written back as it was.

The manifests, certificates and reports dnx writes are dataclasses whose type hints and field metadata
say everything about their JSON: :func:`read_document` checks a parsed JSON value against them and
raises one :class:`SchemaError` line naming the file and the field; :func:`to_json` writes the object
back as JSON; :func:`json_schema` turns the same hints into a JSON Schema (draft 2020-12), so the
checked-in schema, the reader and the writer cannot drift apart.

Types understood: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]``, ``X | None``, unions of those,
``tuple[T, ...]`` (a JSON array), ``dict[str, T]``, ``Any``, and nested dataclasses. Field metadata
(:func:`doc_field`, or ``field(metadata={"dnx": {...}})`` where the caller may not import this module's
helpers) holds JSON Schema keywords the reader enforces too (``minimum``, ``maximum``,
``exclusiveMinimum``, ``pattern``, ``minItems``, ``maxItems``, ``items``) and a ``description``.

A field without a default is a required key. A field defaulting to None is written only when set
(unless ``write_null``, for keys dnx always writes, null included); other defaults are always written.
A dataclass with an ``extra: dict[str, Any]`` field keeps unknown keys there and writes them back
(such documents tolerate keys a newer dnx adds); one without refuses unknown keys. Rules across fields
that JSON Schema cannot state live in a ``check(self)`` method that raises :class:`FieldProblem`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from typing import Any, Literal, Union

from dnx.core.errors import DnxError

META = "dnx"
_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "pattern", "minItems", "maxItems", "items", "const")


class SchemaError(DnxError):
    """A JSON document that does not follow its schema. ``field`` is the dotted path of the bad field."""

    def __init__(self, where: str, field: str, problem: str, hint: str = "") -> None:
        self.where, self.field, self.problem = where, field, problem
        subject = f"{field} " if field else ""
        # the top-level name is the parameter a caller passed (std[1] -> std): the CLI writes its flag there
        root = field.split(".")[0].split("[")[0] if field else None
        super().__init__(f"{where}: {subject}{problem}" + (f"; {hint}" if hint else ""), param=root)


class FieldProblem(Exception):
    """Raised inside a reader or a ``check`` method: ``field`` (dotted, relative) and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field, self.problem = field, problem


def doc_field(default: Any = dataclasses.MISSING, *, description: str | None = None, write_null: bool = False,
              **constraints: Any) -> Any:
    """A dataclass field with its JSON Schema description and constraints (see the module docstring)."""
    unknown = set(constraints) - set(_CONSTRAINTS)
    if unknown:
        raise TypeError(f"unknown constraint(s) {sorted(unknown)}")
    meta = {META: {**constraints, **({"description": description} if description else {}),
                   **({"write_null": True} if write_null else {})}}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata.get(META, {})


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls) -> list[tuple[dataclasses.Field, Any]]:
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.name != "extra"]


def _open(cls) -> bool:
    return any(f.name == "extra" for f in dataclasses.fields(cls))


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _union_args(tp) -> tuple | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


# -- reading ----------------------------------------------------------------------------------------

def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(tp) -> str:
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(json.dumps(v) for v in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "an array"
    if typing.get_origin(tp) is dict or dataclasses.is_dataclass(tp):
        return "an object"
    if args := _union_args(tp):
        return " or ".join(_kind(a) for a in args)
    return "a JSON value"


def _check_constraints(value: Any, meta: dict, path: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise FieldProblem(path, f"must be a finite number, got {_shown(value)}")
        if "minimum" in meta and value < meta["minimum"]:
            raise FieldProblem(path, f"must be >= {meta['minimum']}, got {_shown(value)}")
        if "maximum" in meta and value > meta["maximum"]:
            raise FieldProblem(path, f"must be <= {meta['maximum']}, got {_shown(value)}")
        if "exclusiveMinimum" in meta and value <= meta["exclusiveMinimum"]:
            raise FieldProblem(path, f"must be > {meta['exclusiveMinimum']}, got {_shown(value)}")
    if isinstance(value, str) and "pattern" in meta and not re.search(meta["pattern"], value):
        raise FieldProblem(path, f"must match {meta['pattern']}, got {_shown(value)}")
    if "const" in meta and value != meta["const"]:
        raise FieldProblem(path, f"must be {_shown(meta['const'])}, got {_shown(value)}")
    if isinstance(value, tuple):
        if "minItems" in meta and len(value) < meta["minItems"]:
            raise FieldProblem(path, f"needs at least {meta['minItems']} item(s), got {len(value)}")
        if "maxItems" in meta and len(value) > meta["maxItems"]:
            raise FieldProblem(path, f"takes at most {meta['maxItems']} item(s), got {len(value)}")
        for i, item in enumerate(value):
            _check_constraints(item, meta.get("items", {}), f"{path}[{i}]")


def _convert(tp, value: Any, path: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``, or FieldProblem naming ``path``."""
    if tp is Any:
        return value
    if args := _union_args(tp):
        if value is None and type(None) in args:
            return None
        problems = []
        for alternative in (a for a in args if a is not type(None)):
            try:
                return _convert(alternative, value, path)
            except FieldProblem as exc:
                problems.append(exc)
        deeper = [p for p in problems if p.field != path]  # the value had the right shape but a bad part
        if len(deeper) == 1:
            raise deeper[0]
        raise FieldProblem(path, f"must be {_kind(tp)}, got {_shown(value)}")
    origin = typing.get_origin(tp)
    if origin is Literal:
        for allowed in typing.get_args(tp):
            if value == allowed and type(value) is not bool and (type(value) is type(allowed) or
                                                                isinstance(value, (int, float))):
                return allowed  # 3.0 reads as the 3 it equals
        raise FieldProblem(path, f"must be {_kind(tp)}, got {_shown(value)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise FieldProblem(path, f"must be true or false, got {_shown(value)}")
        return value
    if tp is int:
        # JSON does not tell 1 from 1.0; JSON Schema's "integer" accepts both
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise FieldProblem(path, f"must be an integer, got {_shown(value)}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldProblem(path, f"must be a number, got {_shown(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise FieldProblem(path, f"must be a string, got {_shown(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise FieldProblem(path, f"must be an array, got {_shown(value)}")
        item = typing.get_args(tp)[0]
        return tuple(_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldProblem(path, f"must be an object, got {_shown(value)}")
        item = typing.get_args(tp)[1]
        return {k: _convert(item, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _read(tp, value, path)
    raise TypeError(f"{path}: type {tp!r} is not supported by dnx.core.documents")


def _read(cls, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise FieldProblem(path, f"must be an object, got {_shown(data)}")
    prefix = f"{path}." if path else ""
    values = {}
    for f, tp in _fields(cls):
        name = prefix + f.name
        if f.name not in data:
            if _required(f):
                raise FieldProblem(name, "is missing")
            continue
        value = _convert(tp, data[f.name], name)
        _check_constraints(value, _meta(f), name)
        values[f.name] = value
    known = {f.name for f, _ in _fields(cls)}
    unknown = [k for k in data if k not in known]
    if _open(cls):
        values["extra"] = {k: data[k] for k in unknown}
    elif unknown:
        raise FieldProblem(prefix + unknown[0], "is not a field of this document")
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except FieldProblem as exc:
            raise FieldProblem(prefix + exc.field, exc.problem) from None
    return obj


def read_document(cls, data: Any, where: str, hint: str = "", path: str = ""):
    """``data`` (parsed JSON) as a ``cls``; a :class:`SchemaError` naming ``where`` and the field otherwise.
    ``path``: where ``data`` sits inside the file (e.g. ``source_onnx.manifest``), for the message."""
    try:
        return _read(cls, data, path)
    except FieldProblem as exc:
        raise SchemaError(where, exc.field, exc.problem, hint) from None


def parse_json(text: str | bytes, where: str, hint: str = "") -> Any:
    """JSON text, or one SchemaError line saying ``where`` it is broken."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SchemaError(where, "", f"is not valid JSON ({str(exc).splitlines()[0][:120]})", hint) from None


# -- writing ----------------------------------------------------------------------------------------

def to_json(value: Any) -> Any:
    """A dataclass document (or any value inside one) as plain JSON types, keys in field order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            if f.name == "extra":
                continue
            v = getattr(value, f.name)
            if v is None and f.default is None and not _meta(f).get("write_null"):
                continue
            out[f.name] = to_json(v)
        out.update({k: to_json(v) for k, v in getattr(value, "extra", {}).items()})
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


# -- JSON Schema ------------------------------------------------------------------------------------

def _schema_of(tp, defs: dict) -> dict:
    if tp is Any:
        return {}
    if args := _union_args(tp):
        return {"anyOf": [_schema_of(a, defs) for a in args]}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    origin = typing.get_origin(tp)
    if origin is Literal:
        values = list(typing.get_args(tp))
        return {"const": values[0]} if len(values) == 1 else {"enum": values}
    if origin is tuple:
        return {"type": "array", "items": _schema_of(typing.get_args(tp)[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(typing.get_args(tp)[1], defs)}
    if dataclasses.is_dataclass(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placeholder: a recursive reference resolves to it
            defs[tp.__name__] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    raise TypeError(f"type {tp!r} is not supported by dnx.core.documents")


def _with_constraints(schema: dict, meta: dict) -> dict:
    out = dict(schema)
    for key in _CONSTRAINTS:
        if key not in meta:
            continue
        if key == "items":
            target = out.get("items")
            if target is None:  # X | None: the array alternative holds the items
                target = next(a["items"] for a in out["anyOf"] if "items" in a)
            target.update(meta["items"])
        elif "anyOf" in out and key != "const":
            for alternative in out["anyOf"]:
                if alternative.get("type") != "null":
                    alternative[key] = meta[key]
        else:
            out[key] = meta[key]
    if meta.get("description"):
        out["description"] = meta["description"]
    return out


def _object_schema(cls, defs: dict) -> dict:
    fields = _fields(cls)
    out: dict[str, Any] = {"type": "object"}
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(cls.__name__ + "("):  # not the dataclass' generated signature
        out["description"] = " ".join(doc.split())
    out["required"] = [f.name for f, _ in fields if _required(f)]
    out["properties"] = {f.name: _with_constraints(_schema_of(tp, defs), _meta(f)) for f, tp in fields}
    out["additionalProperties"] = _open(cls)
    out.update(getattr(cls, "json_schema_extra", {}))
    return out


def json_schema(cls, schema_id: str, title: str) -> dict:
    """The JSON Schema (draft 2020-12) of documents ``cls`` reads: the same rules, except ``check``'s."""
    defs: dict[str, dict] = {}
    root = _object_schema(cls, defs)
    defs.pop(cls.__name__, None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, "title": title,
            **root, **({"$defs": dict(sorted(defs.items()))} if defs else {})}
