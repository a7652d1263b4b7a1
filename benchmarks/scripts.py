"""What the one-off measurement scripts in this folder share (``graph_form``, ``export_time``,
``calibration_memory``): where their results go, written atomically as ``results/NAME.json``, and a
command line that only answers ``--help`` (and refuses stray arguments) instead of starting a long run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(name: str, out: dict) -> dict:
    """Write ``out`` to ``results/NAME.json`` (atomically) and return it."""
    from dnx.fileio import write_json_atomic

    RESULTS.mkdir(exist_ok=True)
    write_json_atomic(RESULTS / f"{name}.json", out)
    return out


def run_script(name: str, doc: str, main: Callable[[], object]) -> None:
    """``python -m dnx.benchmarks.NAME``: no options, so the parser only gives --help; then ``main()``."""
    argparse.ArgumentParser(prog=f"python -m dnx.benchmarks.{name}", description=doc.split("\n\n")[0]).parse_args()
    main()
