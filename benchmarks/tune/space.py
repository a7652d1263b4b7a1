"""What ``dnx tune`` searches: one deployment = a precision variant on a backend plus ``dnx serve``'s
batcher, thread and worker settings. Every parameter maps onto a flag of ``dnx serve``, so a point of
the space is exactly a command line (and a ``dnx serve --config`` file).

Axes, in the order the quick search walks them (coarse effects first): engine (variant x backend,
categorical), workers, threads, OpenVINO's performance hint (openvino engines only), max batch, max
delay (ordered: the quick search climbs them).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace

from dnx.core.errors import DnxError

# dnx serve's defaults (dnx/cli/serve.py): the point the quick search starts from and the baseline.
SERVE_DEFAULTS = {"max_batch": 8, "max_delay_ms": 2.0, "workers": 1, "threads": 0, "ov_hint": "latency"}
ORDERED_AXES = ("workers", "threads", "ov_hint", "max_batch", "max_delay_ms")
OV_HINTS = ("latency", "throughput")


@dataclass(frozen=True)
class Deployment:
    """One point of the space. ``threads`` 0: the backend's default; ``backend`` is never ``auto``;
    ``ov_hint`` is OpenVINO's performance hint on the openvino backend, None on the others."""

    variant: str  # a precision variant's name, e.g. "fp32", "int8-openvino"
    backend: str  # onnxruntime, openvino (CPU), onnxruntime-cuda
    max_batch: int
    max_delay_ms: float
    workers: int
    threads: int
    ov_hint: str | None = None

    def serve_flags(self) -> dict:
        """``dnx serve`` flag name -> value (the --config file's keys)."""
        backend, _, device = self.backend.partition("-")  # "onnxruntime-cuda": onnxruntime on the GPU
        return {"backend": backend, "device": device or "auto", "max-batch": self.max_batch,
                "max-delay-ms": float(self.max_delay_ms), "workers": self.workers, "threads": self.threads,
                **({"ov-hint": self.ov_hint} if self.ov_hint else {})}

    def serve_args(self) -> list[str]:
        return [a for k, v in self.serve_flags().items() for a in (f"--{k}", str(v))]

    def label(self) -> str:
        return (f"{self.variant}/{self.backend} b{self.max_batch} d{self.max_delay_ms:g}ms "
                f"w{self.workers} t{self.threads or 'def'}" + (f" ov-{self.ov_hint}" if self.ov_hint else ""))

    def to_dict(self) -> dict:
        return asdict(self)


def serve_defaults(variant: str, backend: str) -> Deployment:
    """What ``dnx serve`` runs ``variant`` with when given only ``--backend``: the baseline."""
    return Deployment(variant, backend, SERVE_DEFAULTS["max_batch"], SERVE_DEFAULTS["max_delay_ms"],
                      SERVE_DEFAULTS["workers"], SERVE_DEFAULTS["threads"],
                      SERVE_DEFAULTS["ov_hint"] if backend == "openvino" else None)


@dataclass(frozen=True)
class Space:
    """The values of each axis. ``engines`` are (variant, backend) pairs, already filtered by accuracy."""

    engines: tuple[tuple[str, str], ...]
    workers: tuple[int, ...] = (1, 2)
    threads: tuple[int, ...] = (0, 1)
    max_batch: tuple[int, ...] = (1, 4, 8, 16)
    max_delay_ms: tuple[float, ...] = (0.5, 2.0, 8.0)
    ov_hint: tuple[str, ...] = OV_HINTS  # searched on openvino engines only
    notes: list[str] = field(default_factory=list, compare=False)

    def validate(self) -> "Space":
        for name in ORDERED_AXES:
            values = getattr(self, name)
            if not values:
                raise DnxError(f"the search space has no value for {name.replace('_', '-')}")
            if list(values) != sorted(set(values)):
                raise DnxError(f"{name.replace('_', '-')} values must be distinct and ascending, got {values}")
        checks = [(all(w >= 1 for w in self.workers), "--workers values must be >= 1"),
                  (all(t >= 0 for t in self.threads), "--threads values must be >= 0 (0: the backend's default)"),
                  (all(b >= 1 for b in self.max_batch), "--max-batch values must be >= 1"),
                  (all(0 <= d <= 10_000 for d in self.max_delay_ms), "--max-delay-ms values must be from 0 to 10000"),
                  (set(self.ov_hint) <= set(OV_HINTS), f"--ov-hint values must be {' or '.join(OV_HINTS)}")]
        for ok, message in checks:
            if not ok:
                raise DnxError(message)
        return self

    def hints(self, backend: str) -> tuple[str | None, ...]:
        """The performance hints searched on ``backend`` (one None where the backend has none)."""
        return self.ov_hint if backend == "openvino" else (None,)

    def size(self) -> int:
        # max delay means nothing without a batcher (max batch 1): those points collapse to one
        batching = sum(1 for b in self.max_batch if b > 1) * len(self.max_delay_ms) + (1 in self.max_batch)
        engines = sum(len(self.hints(backend)) for _, backend in self.engines)
        return engines * len(self.workers) * len(self.threads) * batching

    def grid(self) -> list[Deployment]:
        """Every distinct point (max batch 1 takes only the first delay: the delay is unused there)."""
        points = []
        for (variant, backend), w, t, b, d in itertools.product(self.engines, self.workers, self.threads,
                                                                self.max_batch, self.max_delay_ms):
            if b == 1 and d != self.max_delay_ms[0]:
                continue
            points += [Deployment(variant, backend, b, d, w, t, hint) for hint in self.hints(backend)]
        return points

    def _nearest_default(self, axis: str):
        values, want = getattr(self, axis), SERVE_DEFAULTS[axis]
        if isinstance(want, str):
            return want if want in values else values[0]
        return min(values, key=lambda v: (abs(v - want), v))

    def start(self) -> Deployment:
        """dnx serve's defaults, snapped to the nearest value of each axis; the first engine."""
        variant, backend = self.engines[0]
        return self.canonical(Deployment(variant, backend, *(self._nearest_default(a) for a in
                                                             ("max_batch", "max_delay_ms", "workers", "threads"))))

    def canonical(self, d: Deployment) -> Deployment:
        """The grid's representative of ``d``: max batch 1 takes the first delay; a hint only on openvino
        (dnx serve's default hint, or the nearest the space has, where ``d`` names none)."""
        if d.max_batch == 1 and d.max_delay_ms != self.max_delay_ms[0]:
            d = replace(d, max_delay_ms=self.max_delay_ms[0])
        if d.backend != "openvino":
            return replace(d, ov_hint=None) if d.ov_hint is not None else d
        if d.ov_hint is None:
            return replace(d, ov_hint=self._nearest_default("ov_hint"))
        return d

    def to_dict(self) -> dict:
        return {"engines": [list(e) for e in self.engines], "workers": list(self.workers),
                "threads": list(self.threads), "max_batch": list(self.max_batch),
                "max_delay_ms": list(self.max_delay_ms), "ov_hint": list(self.ov_hint), "size": self.size()}


def parse_values(text: str, kind, option: str) -> tuple:
    """"1,4,8" -> (1, 4, 8), sorted and distinct; a one-line error names ``option``."""
    try:
        values = sorted({kind(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise DnxError(f"{option} takes comma-separated numbers, e.g. 1,4,8; got {text!r}") from None
    if not values:
        raise DnxError(f"{option} needs at least one value, got {text!r}")
    return tuple(values)
