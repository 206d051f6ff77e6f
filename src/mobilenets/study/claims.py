"""The published numbers a report compares with, read from ``claims.yaml`` beside this file at import.

Shapes (what the report's tables index):

* :data:`PAPER_V1_WIDTH`: ``(α, MACs M, params M, top-1)`` rows of the V1 paper's Table 6;
* :data:`PAPER_V1_RESOLUTION`: ``(resolution, MACs M, top-1)`` rows of its Table 7 (α = 1);
* :data:`PAPER_V1_CONV`: name -> ``(params M, MACs M, top-1)``, its Table 4;
* :data:`STUDY_CLAIMS`: model -> ``(params M, "FLOPs" M, top-1, latency ms)``, the V3 CIFAR-10 study's table;
* :data:`STUDY_ABLATION_CLAIMS`: ``(SE, h-swish)`` -> ``(params M, top-1)``, its ablation of V3-Small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["PAPER_V1_CONV", "PAPER_V1_RESOLUTION", "PAPER_V1_WIDTH", "STUDY_ABLATION_CLAIMS", "STUDY_CLAIMS"]

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")


def _load(path: Path = CLAIMS_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


_DATA = _load()
_V1 = _DATA["v1_paper"]
_STUDY = _DATA["v3_cifar10_study"]

PAPER_V1_WIDTH: tuple[tuple[float, float, float, float], ...] = tuple(tuple(row) for row in _V1["width"])
PAPER_V1_RESOLUTION: tuple[tuple[int, float, float], ...] = tuple(tuple(row) for row in _V1["resolution"])
PAPER_V1_CONV: dict[str, tuple[float, float, float]] = {name: tuple(row) for name, row in _V1["conv"].items()}
STUDY_CLAIMS: dict[str, tuple[float, float, float, float]] = {
    model: tuple(row) for model, row in _STUDY["models"].items()
}
STUDY_ABLATION_CLAIMS: dict[tuple[bool, bool], tuple[float, float]] = {
    (bool(se), bool(hswish)): (params, top1) for se, hswish, params, top1 in _STUDY["ablation"]
}
