"""Measurements of deployments: every run kept, each deployment ranked by a robust statistic of its runs,
every run cached on disk (an interrupted search resumes where it stopped).

One load measurement on a busy CPU can be off by 2-3x, and the best of many noisy numbers flatters
itself (on a loaded machine the winner of a 40-point grid failed its own re-measurement). So a
deployment is never ranked by its luckiest run: it is ranked by the *lower median* of its runs (the
worse of two, the middle of three), and the searches (:mod:`.search`) repeat a deployment before it may
take the lead and re-measure the finalists at the end. Each run is a fresh ``dnx serve`` process.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from dnx.benchmarks.tune.load import LoadSpec, measure_deployment
from dnx.benchmarks.tune.space import Deployment
from dnx.core.fileio import write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.core.machine import cpu_model, isa_flags
from dnx.core.version import __version__

CACHE_SCHEMA = "dnx.tune.measure/3"  # bump when what a measurement records or decides changes
KEPT = ("deployment", "label", "runs", "_full", "search", "finalist")  # a row's own keys, not a run's
RUN_FIELDS = ("score", "p50_ms", "p99_ms", "feasible", "capacity", "error", "start_s", "measure_s", "cached")


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
    """Higher is better: holding the SLO first, then the score (requests/s held), then a lower p99.
    With ``--rate`` every deployment that holds carries the same rate, so the p99 decides."""
    p99 = row.get("p99_ms")
    p99 = float("inf") if p99 is None or p99 != p99 else p99
    if mode == "rate":
        return (bool(row.get("feasible")), -p99)
    return (bool(row.get("feasible")), row.get("score", 0.0), -p99)


def typical(runs: list[dict], mode: str) -> dict:
    """The run a deployment is ranked by: the lower median of its runs by :func:`rank_key` (one run:
    itself; two: the worse; three: the middle). One lucky run cannot carry a deployment."""
    ordered = sorted(runs, key=lambda r: rank_key(r, mode))
    return ordered[(len(ordered) - 1) // 2]


def claimed_rate(row: dict) -> float | None:
    """The sustainable rate a deployment is claimed to hold: the lowest rate any of its runs held (ranking
    uses the median; a claim at the median is a coin flip in a fresh process at the edge of the SLO)."""
    held = [r["score"] for r in row.get("runs", []) if r.get("feasible")]
    return min(held) if held else None


class Runs:
    """Every run of every deployment so far, and per deployment the row it is ranked by: the typical
    run's numbers at the top level, all runs under ``runs``. Rows are updated in place as runs come in.
    Subclasses implement :meth:`run_once` (one fresh measurement; the tests feed a fake one)."""

    def __init__(self, mode: str, progress: Callable[[dict], None] = lambda _e: None) -> None:
        self.mode, self.progress = mode, progress
        self.rows: dict[Deployment, dict] = {}
        self.counts = {"search": 0, "confirm": 0, "recheck": 0, "baseline": 0}  # runs made, by purpose
        self.cache_hits = 0
        self.measured_s = 0.0

    def run_once(self, d: Deployment, index: int) -> dict:
        """Run ``index`` (0, 1, ...) of ``d``: ``score``, ``feasible``, ``p99_ms``... and ``cached``."""
        raise NotImplementedError

    def runs(self, d: Deployment) -> int:
        return len(self.rows[d]["runs"]) if d in self.rows else 0

    def __call__(self, d: Deployment, runs: int = 1, why: str = "search") -> dict:
        """``d``'s row, measured until it has at least ``runs`` runs (``why``: what they are counted as)."""
        while self.runs(d) < runs:
            result = self.run_once(d, self.runs(d))
            self.counts[why] += 1
            if result.get("cached"):
                self.cache_hits += 1
            else:
                self.measured_s += result.get("measure_s", 0.0)
            row = self._add(d, {**result, "why": why})
            self.progress({"kind": "measured", "label": d.label(), "row": row, "result": result, "run": self.runs(d),
                           "why": why})
        return self.rows[d]

    def _add(self, d: Deployment, result: dict) -> dict:
        row = self.rows.setdefault(d, {"deployment": d.to_dict(), "label": d.label(), "runs": []})
        row["runs"].append({k: result.get(k) for k in (*RUN_FIELDS, "why")})
        row.setdefault("_full", []).append(result)
        best = typical(row["_full"], self.mode)
        for key in [k for k in row if k not in KEPT]:
            del row[key]  # the previous typical run's fields (one may have had an "error" this one lacks)
        row.update({k: v for k, v in best.items() if k not in ("why", "cached")},
                   cached=all(r["cached"] for r in row["runs"]))
        return row

    def snapshot(self, d: Deployment) -> dict:
        """The row's ranking numbers now (to report beside later ones)."""
        row = self.rows[d]
        return {"score": row.get("score"), "p99_ms": row.get("p99_ms"), "feasible": row.get("feasible"),
                "runs": len(row["runs"])}

    def measurements(self) -> int:
        return sum(self.counts.values())

    def report_rows(self) -> list[dict]:
        """The rows without their private copies of every run's full result."""
        return [{k: v for k, v in row.items() if k != "_full"} for row in self.rows.values()]


class Measurer(Runs):
    """Runs deployments through ``dnx serve``; each run cached by artifact, machine, parameters and index."""

    def __init__(self, paths: dict[str, Path], load: LoadSpec, bodies: list[bytes], cache_dir: Path,
                 progress: Callable[[dict], None] = lambda _e: None) -> None:
        super().__init__(load.mode, progress)
        self.paths, self.load, self.bodies, self.cache_dir = paths, load, bodies, cache_dir
        self.sha = {name: sha256_file(p) for name, p in paths.items()}
        self.machine = machine_key()

    def _cache_file(self, d: Deployment, index: int) -> tuple[Path, dict]:
        key = {"schema": CACHE_SCHEMA, "artifact_sha256": self.sha[d.variant],
               "deployment": {**d.to_dict(), "variant": None}, "load": self.load.to_dict(), "machine": self.machine,
               "run": index}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.cache_dir / f"measure-{digest}.json", key

    def run_once(self, d: Deployment, index: int) -> dict:
        file, key = self._cache_file(d, index)
        if file.is_file():
            result = json.loads(file.read_text())["result"]
            return {**result, "cached": True, "artifact": str(self.paths[d.variant])}
        started = time.perf_counter()
        result = measure_deployment(self.paths[d.variant], d.serve_args(), self.load, self.bodies,
                                    min(64, max(4, 2 * d.max_batch * d.workers)),
                                    lambda m: self.progress({"kind": "step", "label": d.label(), "message": m}),
                                    d.workers)
        result["measure_s"] = round(time.perf_counter() - started, 2)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(file, {"key": key, "result": result}, "the tune cache")
        return {**result, "cached": False, "artifact": str(self.paths[d.variant])}
