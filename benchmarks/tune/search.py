"""The search over deployments: a quick coordinate descent, or the exhaustive grid, both over measured
points only (each run a fresh ``dnx serve`` process, cached: :mod:`.measure`).

Robust ranking, in both searches (as a careful tuner does: one load run on a busy CPU can be off by
2-3x, and the best of many noisy numbers flatters itself):

- **Confirm before leading.** A deployment whose first run beats the incumbent is run a second time
  (and so is the incumbent, if it has one run and holds the SLO); it takes the lead only if the worse of its two runs
  still beats the worse of the incumbent's. A deployment that misses the SLO takes the lead from one
  that misses it too without a second run: such a lead only steers the climb.
- **Re-check the finalists.** After the search, the top ``k`` (3) deployments are run again, round-robin
  (so drift in the machine's load hits them alike), until each has three runs, at least one of them
  after the search; the winner is the finalist with the best median of three. Each finalist keeps its
  search-time numbers (``search``) beside the re-measured ones (``runs``).

Quick search (coordinate descent, as Model Analyzer's "quick" mode hill-climbs, over more axes): start
at ``dnx serve``'s defaults; offer every engine (variant x backend) at the current settings; then climb
each ordered axis (workers, threads, OpenVINO hint, max batch, max delay) from the current value, one
step at a time in the direction that improves, stopping at the first step that does not take the lead
(a step to OpenVINO's throughput hint is also offered without the batcher: :func:`_step`); repeat the
passes until one changes nothing. Each measurement itself stops early once p99 breaks the
SLO (:mod:`.load`).
"""

from __future__ import annotations

import dataclasses
import math
import time

from dnx.benchmarks.tune.measure import rank_key, Runs
from dnx.benchmarks.tune.space import ORDERED_AXES, Deployment, Space

RECHECK_RUNS = 3  # runs of each finalist, the median of which decides


@dataclasses.dataclass
class SearchResult:
    rows: list[dict]  # every deployment measured: finalists first (by their median), then the rest, ranked
    finalists: list[Deployment]  # best first
    winner: dict | None  # the best finalist that holds the SLO (no re-check: the best row that holds)
    evaluations: int  # distinct deployments measured
    measurements: dict  # runs by purpose: search, confirm, recheck (baseline: 0 here)
    seconds: float  # the whole search, re-check included
    recheck_seconds: float
    stopped: str | None  # why the search ended early ("budget"), else None


class _Budget(Exception):
    pass


class _Lead:
    """A search's incumbent and the rule that replaces it (confirm before leading)."""

    def __init__(self, measure: Runs, deadline: float | None) -> None:
        self.measure, self.deadline = measure, deadline
        self.best: Deployment | None = None

    def _key(self, d: Deployment) -> tuple:
        return rank_key(self.measure.rows[d], self.measure.mode)

    def run(self, d: Deployment, runs: int = 1, why: str = "search") -> dict:
        if self.deadline is not None and time.perf_counter() > self.deadline and self.measure.runs(d) < runs:
            raise _Budget
        return self.measure(d, runs, why)

    def offer(self, d: Deployment) -> bool:
        """Measure ``d``; whether it took the lead."""
        self.run(d)
        if self.best is None:
            self.best = d
            return True
        if d == self.best or self._key(d) <= self._key(self.best):
            return False
        if not self.measure.rows[d].get("feasible"):  # better, but missing the SLO too: a provisional lead
            self.best = d  # that only steers the climb; runs are spent confirming deployments that hold
            return True
        self.run(d, 2, "confirm")  # it looks better: a second fresh run before it may lead
        if self.measure.rows[self.best].get("feasible"):  # a miss (or a server that failed to start) stays one
            self.run(self.best, 2, "confirm")  # compared at equal counts: the worse of two each
        if self._key(d) > self._key(self.best):
            self.best = d
            return True
        return False


def _estimate(row: dict, mode: str) -> tuple:
    """What picks the finalists: the mean of the runs (a deployment that led the search is ranked by the
    worse of its two runs, which is right for taking the lead but would drop a good deployment after one
    unlucky run); ties and the SLO as :func:`rank_key` orders them."""
    runs = row["runs"]
    p99s = [r["p99_ms"] for r in runs if r.get("p99_ms") is not None]
    mean = {"feasible": row.get("feasible"), "score": sum(r.get("score") or 0.0 for r in runs) / len(runs),
            "p99_ms": sum(p99s) / len(p99s) if p99s else None}
    return rank_key(mean, mode)


def recheck(measure: Runs, k: int, runs: int = RECHECK_RUNS) -> list[Deployment]:
    """Re-measure the top ``k`` deployments (by the mean of their runs so far; a server that failed to start
    is no candidate) until each has ``runs`` runs and at least one more than now, round-robin. Returns them,
    best first, each row marked ``finalist`` with its numbers before the re-check under ``search``."""

    mode = measure.mode
    ranked = sorted((d for d, row in measure.rows.items() if "error" not in row),
                    key=lambda d: _estimate(measure.rows[d], mode), reverse=True)
    finalists = ranked[:k]
    want = {d: max(runs, measure.runs(d) + 1) for d in finalists}
    for d in finalists:
        measure.rows[d]["search"] = measure.snapshot(d)
    while pending := [d for d in finalists if measure.runs(d) < want[d]]:
        for d in pending:
            measure(d, measure.runs(d) + 1, "recheck")
    for d in finalists:
        measure.rows[d]["finalist"] = True
    return sorted(finalists, key=lambda d: rank_key(measure.rows[d], mode), reverse=True)


def ranked_rows(measure: Runs) -> list[dict]:
    """Every row: the finalists first, then the rest, each group best first."""
    mode = measure.mode
    return sorted(measure.report_rows(), key=lambda r: (bool(r.get("finalist")), rank_key(r, mode)), reverse=True)


def _finish(measure: Runs, started: float, stopped: str | None, recheck_k: int) -> SearchResult:
    recheck_started = time.perf_counter()
    finalists = recheck(measure, recheck_k) if recheck_k > 0 else []
    recheck_s = time.perf_counter() - recheck_started
    pool = [measure.rows[d] for d in finalists] if finalists else \
        sorted(measure.rows.values(), key=lambda r: rank_key(r, measure.mode), reverse=True)
    best = next((r for r in pool if r.get("feasible")), None)
    winner = None if best is None else {k: v for k, v in best.items() if k != "_full"}
    counts = {k: v for k, v in measure.counts.items() if k != "baseline"}
    return SearchResult(ranked_rows(measure), finalists, winner, len(measure.rows),
                        {**counts, "total": sum(counts.values())}, time.perf_counter() - started, recheck_s, stopped)


def exhaustive(space: Space, measure: Runs, deadline: float | None = None, recheck_k: int = 3) -> SearchResult:
    started, stopped = time.perf_counter(), None
    grid = space.grid()
    measure.progress({"kind": "total", "total": len(grid) + round(math.log2(len(grid) + 1)) + 2 * recheck_k})
    lead = _Lead(measure, deadline)
    try:
        for d in grid:
            lead.offer(d)
    except _Budget:
        stopped = "budget"
    return _finish(measure, started, stopped, recheck_k)


def _step(space: Space, best: Deployment, axis: str, value) -> list[Deployment]:
    """The deployments one step of the climb offers: ``best`` with ``axis`` set to ``value``; and a step to
    OpenVINO's throughput hint from a deployment with a batcher also offers it without one (max batch 1).
    The two axes interact: dnx serve's batcher runs one inference at a time, so the parallel streams the
    hint creates only work on requests that arrive unbatched, and neither move alone pays (measured:
    docs/tune.md, "Measured") while the pair can be the best point of the space."""
    steps = [space.canonical(dataclasses.replace(best, **{axis: value}))]
    if axis == "ov_hint" and value == "throughput" and best.max_batch > 1 and 1 in space.max_batch:
        steps.append(space.canonical(dataclasses.replace(best, ov_hint=value, max_batch=1)))
    return steps


def quick(space: Space, measure: Runs, deadline: float | None = None, max_passes: int = 3,
          recheck_k: int = 3) -> SearchResult:
    started, stopped = time.perf_counter(), None
    # an estimate for the ETA: one pass over the engines and every ordered value, a few confirmations
    steps = len(space.engines) + sum(len(getattr(space, a)) - 1 for a in ORDERED_AXES)
    measure.progress({"kind": "total", "total": steps + 4 + 2 * recheck_k})
    lead = _Lead(measure, deadline)
    try:
        lead.offer(space.start())
        for _ in range(max_passes):
            before = lead.best
            for variant, backend in space.engines:
                lead.offer(space.canonical(dataclasses.replace(lead.best, variant=variant, backend=backend)))
            for axis in ORDERED_AXES:
                if getattr(lead.best, axis) is None or (axis == "max_delay_ms" and lead.best.max_batch == 1):
                    continue  # no hint on this backend; no batcher, no delay
                values = getattr(space, axis)
                for direction in (1, -1):
                    moved, i = False, values.index(getattr(lead.best, axis)) + direction
                    while 0 <= i < len(values):
                        steps = _step(space, lead.best, axis, values[i])
                        if not [took for took in map(lead.offer, steps) if took]:  # every one offered
                            break  # ordered: the first step that does not take the lead ends the climb
                        moved, i = True, i + direction
                    if moved:
                        break
            if lead.best == before:
                break
    except _Budget:
        stopped = "budget"
    return _finish(measure, started, stopped, recheck_k)
