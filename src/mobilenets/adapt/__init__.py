"""Fitting a MobileNet to a latency budget measured on the user's own device (NetAdapt).

:func:`adapt` is the whole job (``mobilenets adapt``); :mod:`.netadapt` the iterations, :mod:`.proposals`
what each iteration tries, :mod:`.groups` the channel groups and the filter-norm pruning, :mod:`.finetune`
the short-term fine-tunes through the engine, :mod:`.tables` the adapted network as a table file, and
:mod:`.report` its figures. The latency lookup table is :mod:`mobilenets.analysis.lut`.
"""

from __future__ import annotations

from .netadapt import AdaptOptions, BudgetError, adapt_network
from .run import adapt

__all__ = ["AdaptOptions", "BudgetError", "adapt", "adapt_network"]
