"""The JSON Schemas of dnx's documents, generated from their dataclasses and checked in under ``json/``.

    python -m dnx.schemas.jsonschema          rewrite dnx/schemas/json/*.schema.json
    python -m dnx.schemas.jsonschema --check  exit 1 when a checked-in file differs from its dataclass

Each schema is versioned like its documents (``$id`` ``urn:dnx:manifest:1`` for ``dnx.manifest/1``);
tests/schemas checks the checked-in files are the generated ones, and the C++ runtime's tests
(runtime/cpp/tests) validate their manifest fixtures against them. A schema states types, ranges and
required fields; the rules across fields (one mean per channel, the input shape against the
preprocessing) are the readers' ``check`` methods, which the same tests exercise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dnx.core.documents import json_schema
from dnx.core.fileio import atomic_path
from dnx.models.registry import Preprocess
from dnx.schemas.bench_report import BenchReport
from dnx.schemas.budget_report import BudgetReport
from dnx.schemas.certificate import Certificate
from dnx.schemas.engine_manifest import EngineManifest
from dnx.schemas.manifest import ArtifactManifest

FOLDER = Path(__file__).resolve().parent / "json"

# file stem -> (dataclass, $id, title)
DOCUMENTS = {
    "manifest": (ArtifactManifest, "urn:dnx:manifest:1", "dnx.manifest/1"),
    "engine-manifest": (EngineManifest, "urn:dnx:engine-manifest:1", "dnx.engine-manifest/1"),
    "certificate": (Certificate, "urn:dnx:certificate:1", "dnx.certificate/1"),
    "preprocess": (Preprocess, "urn:dnx:preprocess:1", "dnx preprocess entry (dnx.manifest/1)"),
    "bench": (BenchReport, "urn:dnx:bench:1", "dnx.bench/1"),
    "budget": (BudgetReport, "urn:dnx:budget:1", "dnx accuracy-budget report (dnx.manifest/1 calibration.budget)"),
}


def schema_path(stem: str) -> Path:
    return FOLDER / f"{stem}.schema.json"


def generated() -> dict[str, str]:
    """File stem -> the schema's text as it is checked in."""
    return {stem: json.dumps(json_schema(cls, schema_id, title), indent=1) + "\n"
            for stem, (cls, schema_id, title) in DOCUMENTS.items()}


def load_schema(stem: str) -> dict:
    return json.loads(schema_path(stem).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dnx.schemas.jsonschema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for stem, text in generated().items():
        path = schema_path(stem)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            print(f"wrote {path}")
    for path in stale:
        print(f"{path} differs from its dataclass: run python -m dnx.schemas.jsonschema", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
