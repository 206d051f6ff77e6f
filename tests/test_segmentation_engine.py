"""Segmentation through the one engine: metrics on hand-made masks with known answers, DDP evaluation
(two gloo processes) equal to one process, the task's loss, and a tiny run end to end (train, resume,
eval --json, predict overlay, export)."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from interrupted import killed_then_resumed
from mobilenets.cli import main
from mobilenets.config import TrainConfig, load_config
from mobilenets.data import MaskAugment, TensorSegmentationDataset, make_segmentation_batches
from mobilenets.engine.evaluate import evaluate_segmentation
from mobilenets.engine.plots import best_epoch, read_metrics
from mobilenets.engine.seg_metrics import ConfusionMatrix, confusion_matrix, segmentation_scores
from mobilenets.engine.task import SegmentationTask, get_task, resolve_task
from mobilenets.engine.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------- metrics
def test_scores_of_a_hand_made_case_with_ignore() -> None:
    target = torch.tensor([[0, 0, 1, 1],
                           [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 2, 0, 1]])  # the last pixel is ignored whatever is predicted there
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = segmentation_scores(cm, ["bg", "a", "b"])
    # IoU: bg 2/(3+3-2)=0.5, a 2/(2+3-2)=2/3, b 1/(2+1-1)=0.5
    assert s["per_class_iou"] == pytest.approx({"bg": 0.5, "a": 2 / 3, "b": 0.5})
    assert s["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert s["pixel_acc"] == pytest.approx(5 / 7)
    assert s["mean_acc"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert s["pixels"] == 7


def test_absent_class_has_no_iou_and_is_left_out_of_the_mean() -> None:
    target = torch.tensor([0, 0, 1, 1])
    s = segmentation_scores(confusion_matrix(target.clone(), target, 4))
    assert s["per_class_iou"] == {"0": 1.0, "1": 1.0, "2": None, "3": None}
    assert s["miou"] == 1.0


def test_bad_labels_are_named() -> None:
    with pytest.raises(ValueError, match=r"target label 7 invalid; expected 0\.\.2"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.tensor([0, 7, 255]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(3), torch.zeros(4), 3)


def test_running_matrix_adds_batches_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 5, (6, 9, 9), generator=g), torch.randint(0, 5, (6, 9, 9), generator=g)
    target[:, 0] = 255
    run = ConfusionMatrix(5)
    for i in range(0, 6, 4):
        run.update(pred[i:i + 4], target[i:i + 4])
    assert torch.equal(run.matrix, confusion_matrix(pred, target, 5))


# ------------------------------------------------------------------------------------------- task
class _TinySegmenter(nn.Module):
    """Two convolutions and an upsample, returning torchvision's dict (with an aux output)."""

    task = "segment"

    def __init__(self, num_classes: int = 3, aux: bool = True) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.cls = nn.Conv2d(8, num_classes, 1)
        self.aux = nn.Conv2d(8, num_classes, 1) if aux else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = torch.relu(self.body(x))
        up = nn.functional.interpolate
        out = {"out": up(self.cls(f), size=x.shape[-2:], mode="bilinear", align_corners=False)}
        if self.aux is not None:
            out["aux"] = up(self.aux(f), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


def _dataset(n: int = 10, size: int = 16, seed: int = 0) -> TensorSegmentationDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    masks = (images[:, 0] // 86).to(torch.uint8)  # 3 classes by brightness
    masks[:, :2] = 255
    return TensorSegmentationDataset(images, masks, ["bg", "a", "b"])


def test_task_follows_config_and_weights_the_aux_loss() -> None:
    cfg = load_config(TrainConfig, None, ["task=segment", "data.name=digit_scenes", "aux_weight=0.25"])
    assert resolve_task(cfg) == "segment"
    task = get_task("segment", cfg)
    assert isinstance(task, SegmentationTask) and task.metric == "miou"
    torch.manual_seed(0)
    model = _TinySegmenter()
    x = torch.randn(2, 1, 16, 16)
    y = torch.randint(0, 3, (2, 16, 16))
    y[0, :4] = 255
    with torch.no_grad():
        out = model(x)
    f = nn.functional.cross_entropy
    want = f(out["out"], y, ignore_index=255) + 0.25 * f(out["aux"], y, ignore_index=255)
    assert float(task.loss(model, x, y, torch.autocast("cpu", enabled=False)).detach()) == pytest.approx(float(want), rel=1e-6)
    model.aux = None  # without an aux head the loss is the main head's alone
    assert float(task.loss(model, x, y, torch.autocast("cpu", enabled=False)).detach()) == pytest.approx(
        float(f(model(x)["out"], y, ignore_index=255)), rel=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_eval(rank: int, world: int, port: int, state: dict, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _TinySegmenter()
        model.load_state_dict(state)
        batches, _ = make_segmentation_batches(_dataset(), 3, shuffle=False, seed=0, device=torch.device("cpu"),
                                               rank=rank, world_size=world)
        res = evaluate_segmentation(model, batches, MaskAugment(16).eval(), num_classes=3, distributed=True)
        torch.save({k: res[k] for k in ("miou", "pixel_acc", "loss", "n", "pixels")}, Path(out_dir) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_evaluation_equals_one_process(tmp_path: Path) -> None:
    """Two gloo ranks, each on its shard (10 images: 5 each, none repeated), sum their confusion matrices
    and loss: the counted figures equal one process's on the whole split exactly, the loss to rounding."""
    torch.manual_seed(0)
    model = _TinySegmenter()
    batches, _ = make_segmentation_batches(_dataset(), 4, shuffle=False, seed=0, device=torch.device("cpu"))
    single = evaluate_segmentation(model, batches, MaskAugment(16).eval(), num_classes=3)
    mp.start_processes(_ddp_eval, args=(2, _free_port(), model.state_dict(), str(tmp_path)), nprocs=2,
                       start_method="spawn")
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert got["n"] == single["n"] == 10 and got["pixels"] == single["pixels"]
        assert got["miou"] == single["miou"] and got["pixel_acc"] == single["pixel_acc"]
        assert math.isclose(got["loss"], single["loss"], rel_tol=1e-6)  # float32 sums over other batchings


def test_backbone_starts_from_classifier_weights() -> None:
    """model.backbone_pretrained: the classifier file's trunk tensors (and its BN eps) land in the
    dilated backbone unchanged; a classifier of another width is a one-line error."""
    import mobilenets
    from mobilenets.weights import load_weights
    from mobilenets.weights.create import load_backbone_weights

    path = str(Path(__file__).parent / "fixtures" / "weights" / "tv_mobilenet_v3_large.safetensors")
    seg = mobilenets.create_model("lraspp", backbone="mobilenet_v3_large", backbone_kwargs={"width_mult": 0.1},
                                  num_classes=4)
    assert load_backbone_weights(seg, path) == len(seg.backbone.state_dict())
    clf = mobilenets.create_model("mobilenet_v3_large", width_mult=0.1, num_classes=5, bn_eps=1e-3)
    load_weights(clf, path)
    theirs = clf.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in seg.backbone.state_dict().items())
    assert {m.eps for m in seg.backbone.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    other = mobilenets.create_model("lraspp", backbone="mobilenet_v3_large", num_classes=4)
    with pytest.raises(ValueError, match=r"does not match|do not fit"):
        load_backbone_weights(other, path)


# ------------------------------------------------------------------------------ a tiny run, end to end
TINY = [
    "task=segment", "data.name=digit_scenes", "data.image_size=64", "data.scene_sizes=[64,16,16]",
    "model.name=lraspp",
    "model.kwargs={backbone: mobilenet_v3_small, backbone_kwargs: {width_mult: 0.35}, low_level: first4, "
    "inter_channels: 32, aux_loss: true}",
    "batch_size=16", "eval_batch_size=16", "epochs=2", "sched.warmup_epochs=0.5", "quiet=true",
]
SEG_KEYS = ("best_val_miou", "test_miou", "test_pixel_acc", "test_mean_acc", "test_loss", "test_per_class_iou")
CLASSES = {"__background__", *(str(d) for d in range(10))}


def tiny_cfg(run: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*TINY, f"output_dir={run}", *extra])


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run = tmp_path_factory.mktemp("seg") / "run"
    return run, train(tiny_cfg(run))


def test_run_directory_and_summary(segmentation_run: tuple[Path, dict[str, Any]]) -> None:
    run, summary = segmentation_run
    for name in ("config.yaml", "metrics.csv", "summary.json", "model.safetensors", "config.json",
                 "checkpoints/last.pt", "loss.png", "miou.png", "lr.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["task"] == "segment" and summary["params"] > 0
    for key in SEG_KEYS:
        assert key in summary, key
    assert 0.0 <= summary["test_miou"] <= 1.0 and 0.0 <= summary["test_pixel_acc"] <= 1.0
    assert set(summary["test_per_class_iou"]) == CLASSES
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_loss", "val_miou", "val_pixel_acc", "ema_val_miou"} <= set(rows[0])
    assert best_epoch(rows, "miou") == (summary["best_epoch"], pytest.approx(summary["best_val_miou"], abs=1e-6),
                                        summary["best_weights"])


def test_resume_is_exact(tmp_path: Path, segmentation_run: tuple[Path, dict[str, Any]],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    ref_run, _ = segmentation_run
    ref = torch.load(ref_run / "checkpoints" / "last.pt", weights_only=True)
    got = killed_then_resumed(monkeypatch, tiny_cfg, tmp_path / "run")
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), key
    assert [r["val_miou"] for r in ref["history"]] == [r["val_miou"] for r in got["history"]]
    assert ref["best"] == got["best"] and "miou" in got["best"]


def test_eval_json(segmentation_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    run, summary = segmentation_run
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("miou", "pixel_acc", "mean_acc", "per_class_iou", "n", "split", "dataset"):
        assert key in result, key
    assert result["dataset"] == "digit_scenes" and result["split"] == "test" and result["n"] == 16
    assert result["miou"] == pytest.approx(summary["test_miou"], abs=1e-9)  # the run's recorded test scenes
    assert result["pixel_acc"] == pytest.approx(summary["test_pixel_acc"], abs=1e-9)
    assert set(result["per_class_iou"]) == CLASSES
    assert main(["eval", str(run)]) == 0
    assert "mIoU" in capsys.readouterr().out


def _scene_png(tmp_path: Path, index: int = 0) -> tuple[Path, torch.Tensor]:
    from PIL import Image

    from mobilenets.data import build_datasets

    image, _ = build_datasets("digit_scenes", None, 64, scene_sizes=(4, 4, 4))["test"][index]
    scene = tmp_path / f"scene{index}.png"
    Image.fromarray(image[0].numpy(), mode="L").save(scene)
    return scene, image


def test_predict_writes_the_overlay(tmp_path: Path, segmentation_run: tuple[Path, dict[str, Any]],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    import mobilenets

    run, _ = segmentation_run
    scene, image = _scene_png(tmp_path)
    out = tmp_path / "overlay.png"
    assert main(["predict", str(scene), "--weights", str(run), "--out", str(out), "--json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["out"] == str(out)
    with Image.open(out) as drawn:
        assert drawn.format == "PNG" and drawn.size == (64, 64) and drawn.mode == "RGB"
    # the overlay colours the pixels the weights label as digits, and leaves the rest as the image
    model = mobilenets.from_pretrained(run).eval()
    mean, std = model.pretrained_cfg["mean"][0], model.pretrained_cfg["std"][0]
    with torch.no_grad():
        labels = model((image[None].float() / 255 - mean) / std)["out"].argmax(1)[0]
    drawn = torch.from_numpy(__import__("numpy").array(Image.open(out).convert("RGB"))).long()
    grey = (drawn[..., 0] == drawn[..., 1]) & (drawn[..., 1] == drawn[..., 2])
    assert bool(grey[labels == 0].all())
    if bool((labels > 0).any()):
        assert not bool(grey[labels > 0].all())


def test_export_eval_and_predict_of_a_segmenter_artefact(tmp_path: Path, segmentation_run: tuple[Path, dict[str, Any]],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An exported segmenter (its logits within 1e-4 of eager, verified by export) scores what its weights
    score on the recorded test scenes."""
    pytest.importorskip("onnxruntime")
    run, summary = segmentation_run
    onnx = tmp_path / "seg.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx)]) == 0
    line = capsys.readouterr().out
    assert "(limit 0.0001) vs eager via onnxruntime  OK" in line
    assert float(line.split("max abs diff ")[1].split()[0]) <= 1e-4
    assert main(["eval", str(onnx), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 16
    assert result["miou"] == pytest.approx(summary["test_miou"], abs=1e-3)


def test_export_graph_drops_the_aux_head() -> None:
    """The exported graph computes the main logits only: the folded copy has no aux head left, and
    its one output equals eager's "out"."""
    import mobilenets
    from mobilenets.deploy.fuse import prepare_for_export

    model = mobilenets.create_model("deeplabv3", backbone="mobilenet_v3_small", num_classes=3, in_chans=1,
                                    aux_loss=True, backbone_kwargs={"width_mult": 0.35}, aspp_channels=16).eval()
    graph = prepare_for_export(model)
    assert model.aux_head is not None
    assert not any("aux" in name for name, _ in graph.named_modules())
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(graph(x), model(x)["out"], atol=1e-4)


def test_a_model_of_another_task_is_named(tmp_path: Path) -> None:
    from mobilenets.config import ConfigError

    with pytest.raises(ConfigError, match=r"'lraspp', a segmenter, for task detect; expected a detector"):
        train(tiny_cfg(tmp_path / "run", "task=detect"))
    with pytest.raises(ConfigError, match=r"'mobilenet_v3_small', a classifier, for task segment"):
        train(tiny_cfg(tmp_path / "run2", "model.name=mobilenet_v3_small", "model.kwargs={}"))
