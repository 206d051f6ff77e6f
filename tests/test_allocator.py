"""The CPU malloc tuning training applies: freed activation-sized blocks are reused, not re-faulted."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

_PROBE = r"""
import resource, sys
import torch
from mobilenets.engine.allocator import keep_freed_memory
applied = keep_freed_memory()
def faults_of_a_fresh_64mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 * 1024 * 1024)  # 64 MiB, touched
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del t
    return after - before
for _ in range(3):  # steady state, as in a training loop after its first steps
    faults_of_a_fresh_64mb_tensor()
print(int(applied), faults_of_a_fresh_64mb_tensor())
"""


def _probe(env_value: str | None) -> tuple[bool, int]:
    env = dict(os.environ)
    env.pop("MOBILENETS_MALLOC_TUNING", None)
    if env_value is not None:
        env["MOBILENETS_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, check=True, capture_output=True, text=True)
    applied, faults = out.stdout.split()
    return applied == "1", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_tuning_stops_page_faults_on_reallocation() -> None:
    applied, faults = _probe(None)
    assert applied
    # 64 MiB is 16384 pages: without the tuning every allocation maps fresh zero pages again.
    assert faults < 1000, faults
    off, faults_off = _probe("0")
    assert not off
    assert faults_off > 10000, faults_off
