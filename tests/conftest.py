"""Shared test settings: small thread count and deterministic seeds keep the suite fast and stable."""

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny forwards: OpenMP spin-waits on shared cores cost 10-100x there.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits16_weights(tmp_path_factory: pytest.TempPathFactory):
    """The trained tiny 16-px digits model of the runtime test modules (trained once per session): int8
    accuracy is measured on something that has accuracy to lose. Read-only for the tests that take it."""
    from deploy_models import save_digits_model

    return save_digits_model(tmp_path_factory.mktemp("digits16"), 16)
