"""The search over deployments: a quick coordinate descent, or the exhaustive grid, both over measured
points only, with every measurement cached on disk so an interrupted search resumes where it stopped.

Quick search (coordinate descent, as Model Analyzer's "quick" mode hill-climbs, over more axes): start
at ``dnx serve``'s defaults; try every engine (variant x backend) at the current settings; then climb
each ordered axis (workers, threads, max batch, max delay) from the current value, one step at a
time in the direction that improves, stopping at the first step that does not (or breaks the SLO);
repeat the passes until one changes nothing. Each measurement itself stops early once p99 breaks the
SLO (:mod:`.load`).

Ranking: deployments that hold the SLO first, then by score (the sustained requests/s), then lower p99;
with ``--rate`` every deployment that holds carries the same rate, so lower p99 decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from dnx.benchmarks.tune.load import LoadSpec, measure_deployment
from dnx.benchmarks.tune.space import ORDERED_AXES, Deployment, Space
from dnx.core.fileio import write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.core.machine import cpu_model, isa_flags
from dnx.core.version import __version__

CACHE_SCHEMA = "dnx.tune.measure/2"  # bump when what a measurement records or decides changes


def machine_key() -> dict:
    """What makes a measurement belong to this machine and software (part of every cache key)."""
    import os
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("onnxruntime", "onnxruntime-gpu", "openvino"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "isa": isa_flags(), "dnx": __version__, **versions}


def rank_key(row: dict, mode: str) -> tuple:
    p99 = row.get("p99_ms")
    p99 = float("inf") if p99 is None or p99 != p99 else p99
    if mode == "rate":
        return (bool(row.get("feasible")), -p99)
    return (bool(row.get("feasible")), row.get("score", 0.0), -p99)


class Measurer:
    """Measures deployments through ``dnx serve``; results cached by artifact, machine and parameters."""

    def __init__(self, paths: dict[str, Path], load: LoadSpec, bodies: list[bytes], cache_dir: Path,
                 progress: Callable[[dict], None] = lambda _e: None) -> None:
        self.paths, self.load, self.bodies, self.cache_dir = paths, load, bodies, cache_dir
        self.sha = {name: sha256_file(p) for name, p in paths.items()}
        self.machine = machine_key()
        self.progress = progress
        self.rows: dict[Deployment, dict] = {}
        self.cache_hits = 0
        self.measured_s = 0.0

    def _cache_file(self, d: Deployment) -> tuple[Path, dict]:
        key = {"schema": CACHE_SCHEMA, "artifact_sha256": self.sha[d.variant], "deployment": {**d.to_dict(), "variant": None},
               "load": self.load.to_dict(), "machine": self.machine}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.cache_dir / f"measure-{digest}.json", key

    def __call__(self, d: Deployment) -> dict:
        if d in self.rows:
            return self.rows[d]

        file, key = self._cache_file(d)
        if file.is_file():
            result, cached = json.loads(file.read_text())["result"], True
            self.cache_hits += 1
        else:
            started = time.perf_counter()
            result = measure_deployment(self.paths[d.variant], d.serve_args(), self.load, self.bodies,
                                        min(64, max(4, 2 * d.max_batch * d.workers)),
                                        lambda m: self.progress({"kind": "step", "label": d.label(), "message": m}),
                                        d.workers)
            result["measure_s"] = round(time.perf_counter() - started, 2)
            self.measured_s += result["measure_s"]
            cached = False
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(file, {"key": key, "result": result}, "the tune cache")
        row = {"deployment": d.to_dict(), "label": d.label(), "artifact": str(self.paths[d.variant]),
               **result, "cached": cached}
        self.rows[d] = row
        self.progress({"kind": "measured", "label": d.label(), "row": row})
        return row


@dataclasses.dataclass
class SearchResult:
    rows: list[dict]  # every deployment measured, ranked
    evaluations: int
    seconds: float
    stopped: str | None  # why the search ended early ("budget"), else None


def _ranked(rows, mode: str) -> list[dict]:
    return sorted(rows, key=lambda r: rank_key(r, mode), reverse=True)


def exhaustive(space: Space, measure: Measurer, deadline: float | None = None) -> SearchResult:
    started, stopped = time.perf_counter(), None
    grid = space.grid()
    measure.progress({"kind": "total", "total": len(grid)})
    for d in grid:
        if deadline is not None and time.perf_counter() > deadline:
            stopped = "budget"
            break
        measure(d)
    return SearchResult(_ranked(measure.rows.values(), measure.load.mode), len(measure.rows),
                        time.perf_counter() - started, stopped)


def quick(space: Space, measure: Measurer, deadline: float | None = None, max_passes: int = 3) -> SearchResult:
    started = time.perf_counter()
    mode = measure.load.mode
    # an estimate for the ETA: one pass over the engines and every ordered value
    measure.progress({"kind": "total", "total": len(space.engines) + sum(len(getattr(space, a)) - 1
                                                                           for a in ORDERED_AXES)})

    class _Budget(Exception):
        pass

    def run(d: Deployment) -> dict:
        if deadline is not None and time.perf_counter() > deadline and d not in measure.rows:
            raise _Budget
        return measure(d)

    current = space.start()
    stopped = None
    try:
        best = run(current)
        for _ in range(max_passes):
            before = current
            for variant, backend in space.engines:
                cand = dataclasses.replace(current, variant=variant, backend=backend)
                if rank_key(row := run(cand), mode) > rank_key(best, mode):
                    best, current = row, cand
            for axis in ORDERED_AXES:
                if axis == "max_delay_ms" and current.max_batch == 1:
                    continue  # no batcher, no delay
                values = getattr(space, axis)
                for direction in (1, -1):
                    moved, i = False, values.index(getattr(current, axis)) + direction
                    while 0 <= i < len(values):
                        cand = space.canonical(dataclasses.replace(current, **{axis: values[i]}))
                        row = run(cand)
                        if rank_key(row, mode) <= rank_key(best, mode):
                            break  # ordered: the first step that does not improve ends the climb
                        best, current, moved = row, cand, True
                        i += direction
                    if moved:
                        break
            if current == before:
                break
    except _Budget:
        stopped = "budget"
    return SearchResult(_ranked(measure.rows.values(), mode), len(measure.rows), time.perf_counter() - started,
                        stopped)
