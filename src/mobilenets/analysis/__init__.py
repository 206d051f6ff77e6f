"""Measurement: batch-1 CPU latency of a model, whole and per layer (:mod:`.latency`), on top of the
deployment runtimes. Parameter and MAC counts are :mod:`mobilenets.cost`; experiment grids and the report
are :mod:`mobilenets.study`."""
