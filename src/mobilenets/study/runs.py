"""The runs a report shows: every finished run of the experiment (or run) directories given, seeds
aggregated, with their run directories resolved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .experiment import load_results


@dataclass
class _Run:
    """An aggregated run (one name, all seeds) with its directories resolved."""

    row: dict[str, Any]
    dirs: list[Path]
    records: list[dict[str, Any]]
    experiment: str = ""

    @property
    def name(self) -> str:
        return str(self.row["name"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.row.get("kwargs") or {})

    @property
    def task(self) -> str:
        """``classify``, ``detect`` or ``segment``: which section of the report the run belongs to (a run
        written before summaries named their task is a classifier's)."""
        return str(self.row.get("task") or "classify")

    @property
    def is_detection(self) -> bool:
        """A detector's run (its summary says ``task: detect``): reported with box mAP, not top-1."""
        return self.task == "detect"

    @property
    def is_segmentation(self) -> bool:
        """A segmenter's run (its summary says ``task: segment``): reported with mIoU, not top-1."""
        return self.task == "segment"


def _collect(inputs: Sequence[str | Path]) -> tuple[list[_Run], list[dict[str, Any]]]:
    runs: list[_Run] = []
    results = []
    for item in inputs:
        data = load_results(item)
        results.append(data)
        root = Path(data["root"])
        for row in data["summary"]:
            recs = [r for r in data["runs"] if r["name"] == row["name"]]
            dirs = [(root / d).resolve() for d in row["run_dirs"]]
            runs.append(_Run(dict(row), dirs, recs, str(data.get("experiment"))))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # several experiments: prefix to keep names unique
        for r in runs:
            r.row["name"] = f"{r.experiment}/{r.name}"
    if not runs:
        raise ValueError("no finished runs in " + ", ".join(map(str, inputs)))
    return runs, results
