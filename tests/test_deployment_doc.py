"""docs/deployment.md runs as written: each runtime's block, with only that runtime, numpy and Pillow, gives
the class and probability ``mobilenets predict`` gives for the same file and image.

The page's first block (``preprocess``, ``softmax``) is shared; every other block is run after it, in a
directory holding the file it names and ``digit.png``. The image is not the model's size and not square, so
the resize and centre crop of the recipe are exercised, not skipped.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)

#: The runtime a block imports -> (the file it opens, how that file is made, pytest.importorskip names).
RUNTIMES = {
    "ai_edge_litert": ("model.tflite", ("export", "litert"), ("ai_edge_litert", "litert_torch")),
    "int8-io": ("model.tflite", ("quantize", "litert"), ("ai_edge_litert", "litert_torch", "torchao")),
    "onnxruntime": ("model.onnx", ("export", "onnx"), ("onnxruntime", "onnxscript")),
    "openvino": ("model.xml", ("export", "openvino"), ("openvino",)),
    "ncnn": ("model.ncnn.param", ("export", "ncnn"), ("ncnn", "pnnx")),
}


def blocks() -> tuple[str, dict[str, str]]:
    """The shared first block, and every other block keyed by the runtime it imports."""
    found = BLOCK.findall(DOC.read_text())
    common, rest = found[0], found[1:]
    keyed = {}
    for text in rest:
        key = next(k for k in RUNTIMES if k != "int8-io" and re.search(rf"^import {k}|^from {k}", text, re.M))
        keyed[key] = text
    keyed["int8-io"] = keyed["ai_edge_litert"]  # the LiteRT block handles both files
    return common, keyed


def test_the_page_has_a_block_per_runtime_and_the_shared_one() -> None:
    common, keyed = blocks()
    assert "def preprocess(" in common and "def softmax(" in common
    assert set(keyed) == set(RUNTIMES)


def _digit_png(path: Path) -> None:
    from PIL import Image

    from mobilenets.data.tensor import load_digits_splits

    digit = load_digits_splits(16)["test"].images[3, 0].numpy()
    Image.fromarray(digit).resize((40, 30), Image.BILINEAR).save(path)


# The fp32 LiteRT file runs the same block as the int8-io one, which also takes its int8 branches: slow.
@pytest.mark.parametrize("runtime", [pytest.param(k, marks=pytest.mark.slow) if k == "ai_edge_litert" else k
                                     for k in RUNTIMES])
def test_each_block_matches_mobilenets_predict(runtime: str, digits16_weights: Path, tmp_path: Path) -> None:
    name, (command, target), modules = RUNTIMES[runtime]
    for module in modules:
        pytest.importorskip(module)
    from mobilenets.deploy.evaluate import predict_images
    from mobilenets.deploy.export import export_model
    from mobilenets.deploy.quantize_run import quantize_weights

    path = tmp_path / name
    if command == "export":
        export_model(digits16_weights, target, path)
    else:
        quantize_weights(digits16_weights, target=target, out=path, int8_io=True, calib_batches=2, evaluate=False)
    _digit_png(tmp_path / "digit.png")
    common, keyed = blocks()
    out = io.StringIO()
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(common + "\n" + keyed[runtime], f"{DOC.name}:{runtime}", "exec"), {"__name__": "doc"})
    finally:
        os.chdir(here)
    label, prob = out.getvalue().split()
    top = predict_images([str(tmp_path / "digit.png")], path, topk=1, device="cpu")[0]["top"][0]
    assert label == top["class"], (runtime, out.getvalue(), top)
    assert abs(float(prob) - top["prob"]) <= 1e-3, (runtime, out.getvalue(), top)
    assert np.isfinite(float(prob))
