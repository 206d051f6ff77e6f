"""Digit scenes: a detection dataset **composed** from scikit-learn's real handwritten digits.

The scenes are synthetic compositions, not photographs: each is a ``canvas x canvas`` (default 128)
image holding 1-6 of the real 8x8 digits of :func:`~.tensor.load_digits_splits`, each upsampled
(bilinear) to a random square size of 16-56 px and placed at a random position, squares overlapping at
most ``max_overlap`` (20%) of the smaller one; the background is a little Gaussian noise on black (std 4%
of full intensity, clipped at 0) and every pixel keeps the brightest of the noise and the digits'
ink there. The digits are real, their arrangement is not.

* **Splits never share a digit**: train scenes use only the classifier's train digits, val scenes its
  val digits, test scenes its test digits (``source_rows`` records the ``load_digits`` row of every
  placed digit, so this can be checked). Test scenes are the same in every run (the digits' test split
  and the test scenes both use fixed seeds); val scenes follow ``seed``.
* **Exact targets**: a digit's box is the tight box of its own rendered ink (clean pixels >= ``ink``,
  default 64 of 255: a quarter of full intensity, far above the noise), in canvas pixels; ``masks`` hold
  the label of the ink at each pixel (0 = background; where ink of two digits overlaps, the larger
  label, a deterministic rule), kept on the dataset for segmentation (``masks=False`` skips them).
* **Fresh training scenes**: the training split is regenerated for every epoch, deterministically in
  ``(seed, epoch)`` (:meth:`DigitScenes.set_epoch`), so a resumed run sees exactly the scenes it would
  have seen; val and test are generated once.
* **Fast**: the layout is drawn for all scenes at once (a loop over the 6 slots only); the digits of
  one size are rendered by two matrix products (or gathered from a bank pre-rendered at every size, for
  a training split) and pasted with one ``scatter_reduce`` per size, on the dataset's device; the noise
  comes from a per-epoch bank of Gaussian rows (each scene row picks one at random), a gather instead of
  2M fresh normal draws per 128 scenes. About a second per 8192-scene epoch on one CPU core.

Defaults: 8192 training scenes per epoch (about 28k digits, twenty passes over the 1257 train digits in
new places, and an epoch short enough on a CPU to evaluate and checkpoint often), 512 val scenes (about
1800 boxes: a stable mAP at a few seconds of evaluation) and 1024 test scenes (about 3600 boxes, 360 per
class).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..constants import IGNORE_INDEX
from .detection import ground_truth
from .tensor import TensorImageDataset, load_digits_splits

__all__ = ["SCENES_TEST_SEED", "SCENE_SIZES", "DigitScenes", "SceneSegmentation", "SceneSpec", "compose_scenes",
           "load_scene_splits"]

#: Scenes per split by default: (train per epoch, val, test); see the module docstring.
SCENE_SIZES: tuple[int, int, int] = (8192, 512, 1024)
#: The test scenes always use this seed (like the digits' test split), whatever the run's seed.
SCENES_TEST_SEED = 0
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_NOISE_ROWS = 4096
_BANK_FROM = 1024  # training scenes per epoch from which the digits are pre-rendered at every size


@dataclass(frozen=True)
class SceneSpec:
    """What a scene looks like; every field is a keyword of :func:`load_scene_splits`."""

    canvas: int = 128
    min_digits: int = 1
    max_digits: int = 6
    min_size: int = 16  # digit square side in pixels (the 8x8 digit upsampled), uniform in [min, max]
    max_size: int = 56
    max_overlap: float = 0.2  # intersection / area of the smaller square, per pair of digits
    noise: float = 0.04  # Gaussian noise std, a fraction of full intensity
    ink: int = 64  # clean pixel value (0..255) from which a pixel is a digit's ink (boxes, masks)
    tries: int = 16  # candidate placements per digit before it is left out

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"min_digits={self.min_digits}, max_digits={self.max_digits} invalid; expected 1 <= min <= max")
        if not 1 <= self.min_size <= self.max_size <= self.canvas:
            raise ValueError(f"digit sizes {self.min_size}..{self.max_size} invalid for canvas {self.canvas}; "
                             "expected 1 <= min_size <= max_size <= canvas")
        if not 0.0 <= self.max_overlap <= 1.0 or self.noise < 0 or not 1 <= self.ink <= 255 or self.tries < 1:
            raise ValueError(f"{self} invalid; expected 0 <= max_overlap <= 1, noise >= 0, 1 <= ink <= 255, tries >= 1")


def _seed(seed: int, split: str, epoch: int) -> int:
    """An independent 63-bit seed per (seed, split, epoch)."""
    a, b = np.random.SeedSequence([int(seed), _SPLIT_CODES.get(split, 0), int(epoch)]).generate_state(2)
    return (int(a) << 31) ^ int(b)


def _layout(n: int, spec: SceneSpec, num_digits: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Per scene and slot: the digit square ``(x0, y0, side)`` [n, K, 3], whether it is placed [n, K]
    (placed slots first) and the digit drawn [n, K] — all on the CPU, all scenes at once."""
    k_max, tries, s = spec.max_digits, spec.tries, spec.canvas
    count = torch.randint(spec.min_digits, k_max + 1, (n,), generator=g)
    side = torch.randint(spec.min_size, spec.max_size + 1, (n, k_max, tries), generator=g)
    x0 = (torch.rand((n, k_max, tries), generator=g) * (s - side + 1)).floor().long()
    y0 = (torch.rand((n, k_max, tries), generator=g) * (s - side + 1)).floor().long()
    pick = torch.randint(0, num_digits, (n, k_max), generator=g)
    squares = torch.zeros((n, k_max, 3), dtype=torch.long)
    placed = torch.zeros((n, k_max), dtype=torch.bool)
    rows = torch.arange(n)
    for j in range(k_max):
        cx0, cy0, cs = x0[:, j], y0[:, j], side[:, j]  # [n, T]
        ok = (j < count)[:, None].expand(n, tries).clone()
        if j:
            px0, py0, ps = squares[:, None, :j].unbind(-1)  # [n, 1, j]
            iw = (torch.minimum(cx0[..., None] + cs[..., None], px0 + ps) - torch.maximum(cx0[..., None], px0)).clamp(min=0)
            ih = (torch.minimum(cy0[..., None] + cs[..., None], py0 + ps) - torch.maximum(cy0[..., None], py0)).clamp(min=0)
            smaller = torch.minimum(cs[..., None], ps).pow(2)
            clash = (iw * ih > spec.max_overlap * smaller) & placed[:, None, :j]
            ok &= ~clash.any(-1)
        first = ok.long().argmax(1)
        has = ok.any(1)
        squares[:, j] = torch.stack([cx0[rows, first], cy0[rows, first], cs[rows, first]], -1) * has[:, None]
        placed[:, j] = has
    order = torch.argsort((~placed).long(), dim=1, stable=True)
    return squares.gather(1, order[..., None].expand(-1, -1, 3)), placed.gather(1, order), pick.gather(1, order)


def _render(src: Tensor, s: int, ink: int) -> tuple[Tensor, Tensor]:
    """Digits ``src`` (float [D, 8, 8], 0..255) upsampled bilinearly to ``s x s``: (uint8 patches
    [D, s, s], tight ink boxes [D, 4] as patch-relative ``(x0, y0, x1, y1)``)."""
    eye = torch.eye(src.shape[-1], device=src.device)
    # bilinear upsampling (align_corners=False) is separable: W^T @ x @ W with W the 1-D weights [8, s],
    # three times faster than interpolate on a CPU
    w = F.interpolate(eye[:, None], size=s, mode="linear", align_corners=False)[:, 0]
    patch = torch.matmul(torch.matmul(w.t(), src), w).round_().clamp_(0, 255)
    rows, cols = patch.amax(2) >= ink, patch.amax(1) >= ink  # [D, s]; every digit has ink (its peak is 255)
    ar = torch.arange(s, device=patch.device)
    big = torch.full_like(ar, s)
    box = torch.stack([torch.where(cols, ar, big).amin(1), torch.where(rows, ar, big).amin(1),
                       torch.where(cols, ar, -1).amax(1) + 1, torch.where(rows, ar, -1).amax(1) + 1], -1)
    return patch.to(torch.uint8), box


def digit_bank(digits: Tensor, spec: SceneSpec, device: torch.device | str = "cpu") -> dict[int, tuple[Tensor, Tensor]]:
    """Every digit rendered at every side ``min_size..max_size``: side -> :func:`_render`'s pair. Built
    once for a training split (72 MiB for the 1257 train digits at 16..56 px), so an epoch only gathers
    and pastes."""
    src = digits.to(device).float()[:, 0]
    return {s: _render(src, s, spec.ink) for s in range(spec.min_size, spec.max_size + 1)}


def _paste(images: Tensor, masks: Tensor | None, patch: Tensor, labels: Tensor, scene: Tensor, sq: Tensor,
           spec: SceneSpec) -> None:
    """Paste one size group of digit patches into the flat uint8 ``images`` (``amax``: overlapping ink
    keeps the brighter pixel, and a digit covers the background noise) and ``masks`` (``amax`` of the
    labels of the ink there)."""
    s, c = patch.shape[-1], spec.canvas
    ar = torch.arange(s, device=patch.device)
    x0, y0 = sq[:, 0].view(-1, 1, 1), sq[:, 1].view(-1, 1, 1)
    flat = ((scene.view(-1, 1, 1) * c + y0 + ar.view(1, s, 1)) * c + x0 + ar.view(1, 1, s)).reshape(-1)
    images.scatter_reduce_(0, flat, patch.reshape(-1), reduce="amax")
    if masks is not None:
        lab = (patch >= spec.ink).to(torch.uint8).mul_(labels.to(torch.uint8).view(-1, 1, 1))
        masks.scatter_reduce_(0, flat, lab.reshape(-1), reduce="amax")


def compose_scenes(digits: Tensor, digit_labels: Tensor, n: int, spec: SceneSpec, seed: int,
                   device: torch.device | str = "cpu", masks: bool = True,
                   bank: dict[int, tuple[Tensor, Tensor]] | None = None) -> dict[str, Any]:
    """``n`` scenes from ``digits`` (uint8 [D, 1, 8, 8], labels 0..9) deterministically from ``seed``:
    ``images`` uint8 [n, 1, S, S], ``masks`` uint8 [n, S, S] (None when ``masks=False``), ``boxes``
    float32 [n, K, 4], ``labels`` int64 [n, K] (digit + 1, -1 = empty slot), ``pick`` [n, K] (the
    digit's row in ``digits``, -1 empty), ``counts`` [n] (CPU). ``bank`` is :func:`digit_bank` of
    ``digits``; without one each placed digit is rendered on the fly (cheaper for a few scenes).

    The layout and the noise picks come from one CPU generator, so boxes and masks never depend on the
    device; the noise bank is drawn on ``device``. Each size group is one gather from the bank and one
    ``scatter_reduce`` straight into the uint8 output: on a CPU generation is bound by memory traffic.
    """
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    squares, placed, pick = _layout(n, spec, int(digits.shape[0]), g)
    c, k_max = spec.canvas, spec.max_digits
    noise_rows = torch.randint(0, _NOISE_ROWS, (n * c,), generator=g).to(device)
    gd = torch.Generator(device=device).manual_seed(seed ^ 0x5EED)
    noise = torch.randn((_NOISE_ROWS, c), generator=gd, device=device).mul_(spec.noise * 255.0)
    noise = noise.round_().clamp_(0, 255).to(torch.uint8)  # Gaussian noise on black, clipped at 0
    images = noise.index_select(0, noise_rows).view(-1)
    mask_canvas = torch.zeros(n * c * c, dtype=torch.uint8, device=device) if masks else None
    lab = digit_labels.to(device)
    src = None if bank is not None else digits.to(device).float()[:, 0]
    inst = torch.nonzero(placed.view(-1)).view(-1)  # CPU: (scene * K + slot) of every placed digit
    flat_sq = squares.view(-1, 3)[inst]
    boxes = torch.zeros((n * k_max, 4), dtype=torch.float32, device=device)
    for s in torch.unique(flat_sq[:, 2]).tolist():
        in_group = flat_sq[:, 2] == s
        sel = inst[in_group]
        d = pick.view(-1)[sel].to(device)
        sq = flat_sq[in_group].to(device)
        if bank is not None:
            patches, rel = (t.index_select(0, d) for t in bank[s])
        else:
            assert src is not None
            patches, rel = _render(src.index_select(0, d), s, spec.ink)
        _paste(images, mask_canvas, patches, lab[d] + 1, (sel // k_max).to(device), sq, spec)
        boxes[sel.to(device)] = (rel + sq[:, :2].repeat(1, 2)).float()
    placed_dev = placed.to(device)
    return {"images": images.view(n, 1, c, c), "masks": None if mask_canvas is None else mask_canvas.view(n, c, c),
            "boxes": boxes.view(n, k_max, 4), "labels": torch.where(placed_dev, lab[pick.to(device)] + 1, -1),
            "pick": torch.where(placed, pick, -1), "counts": placed.sum(1)}


class DigitScenes(torch.utils.data.Dataset):
    """One split of digit scenes (see the module docstring), held as tensors on :attr:`device`.

    ``digits`` is the split's classifier dataset at 8x8 (:func:`~.tensor.load_digits_splits` with
    ``image_size=8``). ``fresh_each_epoch`` (the training split) regenerates the scenes in
    :meth:`set_epoch`; otherwise they are fixed. ``batch(indices)`` is the fast path
    :class:`~.detection.DetectionLoader` uses; ``dataset[i]`` the per-item one. For segmentation,
    ``segmentation_batch(indices)`` (what :class:`~.segmentation.SegmentationLoader` prefers) gives the
    images and masks, and :meth:`as_segmentation` a view whose items are ``(image, mask)`` pairs.
    """

    num_channels = 1
    #: Mask value that counts for nothing; the scenes' own masks never use it (every pixel is labelled),
    #: but crop padding does (:class:`~.augment.masks.MaskAugment`).
    ignore_index = IGNORE_INDEX

    def __init__(self, digits: TensorImageDataset, num_scenes: int, *, spec: SceneSpec | None = None, seed: int = 0,
                 split: str = "train", fresh_each_epoch: bool = False, device: torch.device | str = "cpu",
                 masks: bool = True) -> None:
        if int(num_scenes) < 1:
            raise ValueError(f"num_scenes={num_scenes} invalid; expected >= 1")
        if tuple(digits.images.shape[1:]) != (1, 8, 8):
            raise ValueError(f"digits must be the 8x8 digits (load_digits_splits(image_size=8)), got {tuple(digits.images.shape)}")
        self.spec = spec or SceneSpec()
        self.digits = digits
        self.num_scenes, self.seed, self.split = int(num_scenes), int(seed), split
        self.fresh_each_epoch = fresh_each_epoch
        self.keep_masks = bool(masks)
        self.device = torch.device(device)
        self.classes = ["__background__", *(str(i) for i in range(10))]
        self.label_to_category = list(range(len(self.classes)))
        self.epoch = -1
        # a bank pays off over many epochs of many scenes; a few scenes render their digits directly
        self._bank = digit_bank(digits.images, self.spec, self.device) if fresh_each_epoch and num_scenes >= _BANK_FROM else None
        self.set_epoch(0, force=True)

    @property
    def image_size(self) -> int:
        return self.spec.canvas

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_epoch(self, epoch: int, *, force: bool = False) -> None:
        """Make the scenes of ``epoch`` current (training split; a no-op for fixed splits)."""
        if not force and (not self.fresh_each_epoch or int(epoch) == self.epoch):
            return
        self.epoch = int(epoch) if self.fresh_each_epoch else 0
        out = compose_scenes(self.digits.images, self.digits.labels, self.num_scenes, self.spec,
                             _seed(self.seed, self.split, self.epoch), self.device, masks=self.keep_masks, bank=self._bank)
        self.images, self.masks, self.boxes, self.labels = out["images"], out["masks"], out["boxes"], out["labels"]
        self.counts = out["counts"]
        src = self.digits.source_indices if self.digits.source_indices is not None else torch.arange(len(self.digits))
        #: the ``load_digits`` row of each placed digit [N, K] (-1: empty slot): proves splits are disjoint
        self.source_rows = torch.where(out["pick"] >= 0, src[out["pick"].clamp(min=0)], -1)
        self.image_ids = torch.arange(self.num_scenes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        k = int(self.counts[index])
        s = self.spec.canvas
        return self.images[index], {"boxes": self.boxes[index, :k], "labels": self.labels[index, :k],
                                    "image_id": int(self.image_ids[index]), "orig_size": (s, s)}

    def batch(self, indices: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Images and padded targets of ``indices`` (CPU int64) on :attr:`device`; ``M`` = the most
        boxes among them, read from the CPU counts (no device sync)."""
        indices = indices.long().cpu()
        m = max(1, int(self.counts[indices].max())) if indices.numel() else 1
        idx = indices.to(self.device)
        s = self.spec.canvas
        return self.images.index_select(0, idx), {
            "boxes": self.boxes.index_select(0, idx)[:, :m], "labels": self.labels.index_select(0, idx)[:, :m],
            "image_id": self.image_ids[indices].to(self.device),
            "orig_size": torch.full((idx.numel(), 2), s, dtype=torch.int64, device=self.device)}

    def _need_masks(self) -> Tensor:
        if self.masks is None:
            raise ValueError(f"the {self.split} digit scenes were built with masks=False (scene_masks: false); "
                             "segmentation needs masks=True")
        return self.masks

    def segmentation_item(self, index: int) -> tuple[Tensor, Tensor]:
        """``(image uint8 [1, S, S], mask uint8 [S, S])`` of scene ``index``: labels 0 (background) .. 10."""
        return self.images[index], self._need_masks()[index]

    def segmentation_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images and masks (uint8 both) of ``indices`` on :attr:`device`: the segmentation fast path."""
        masks = self._need_masks()
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.device)
        return self.images.index_select(0, idx), masks.index_select(0, idx)

    def as_segmentation(self) -> SceneSegmentation:
        """These scenes as a segmentation split (items and batches are ``(image, mask)``)."""
        self._need_masks()
        return SceneSegmentation(self)

    def to(self, device: torch.device | str) -> DigitScenes:
        """A copy on ``device`` (later epochs are composed there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        new = copy.copy(self)
        new.device = device
        if self._bank is not None:
            new._bank = {k: (p.to(device), b.to(device)) for k, (p, b) in self._bank.items()}
        for name in ("images", "masks", "boxes", "labels"):
            value = getattr(self, name)
            setattr(new, name, None if value is None else value.to(device))
        return new

    def subset(self, indices: Tensor | list[int]) -> DigitScenes:
        """The given scenes, frozen (a subset of a training split no longer regenerates); image ids kept."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        new = copy.copy(self)
        new.fresh_each_epoch = False
        dev = idx.to(self.device)
        new.images, new.masks = self.images[dev], None if self.masks is None else self.masks[dev]
        new.boxes, new.labels = self.boxes[dev], self.labels[dev]
        new.counts, new.source_rows, new.image_ids = self.counts[idx], self.source_rows[idx], self.image_ids[idx]
        return new

    def coco_ground_truth(self) -> dict[str, Any]:
        """COCO ``instances`` dict of the current scenes (canvas pixels are the original pixels; area is
        the box area)."""
        s = self.spec.canvas
        boxes, labels = self.boxes.cpu(), self.labels.cpu()
        images, anns = [], []
        for i in range(len(self)):
            iid = int(self.image_ids[i])
            images.append({"id": iid, "width": s, "height": s, "file_name": f"{self.split}_scene_{iid:05d}.png"})
            for b, lab in zip(boxes[i, : int(self.counts[i])].tolist(), labels[i, : int(self.counts[i])].tolist()):
                anns.append({"image_id": iid, "category_id": int(lab), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
        return ground_truth(images, anns, self.classes, self.label_to_category)

    def __repr__(self) -> str:
        return (f"DigitScenes(split={self.split!r}, n={self.num_scenes}, canvas={self.spec.canvas}, "
                f"fresh_each_epoch={self.fresh_each_epoch}, device={self.device}) [composed from real digits]")


class SceneSegmentation(torch.utils.data.Dataset):
    """A :class:`DigitScenes` split seen as a segmentation split: ``dataset[i] -> (image, mask)``,
    ``batch(indices)`` the images and masks, ``set_epoch`` / ``subset`` / ``to`` through to the scenes
    (so training scenes stay fresh each epoch). Other attributes (``split``, ``spec``, ``boxes``, ...) are
    the scenes' own."""

    def __init__(self, scenes: DigitScenes) -> None:
        self.scenes = scenes

    def __getattr__(self, name: str) -> Any:
        if name == "scenes":  # not set yet (copy / unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.scenes, name)

    @property
    def classes(self) -> list[str]:
        return self.scenes.classes

    @property
    def num_classes(self) -> int:
        return self.scenes.num_classes

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.scenes.segmentation_item(index)

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        return self.scenes.segmentation_batch(indices)

    def set_epoch(self, epoch: int) -> None:
        self.scenes.set_epoch(epoch)

    def subset(self, indices: Tensor | list[int]) -> SceneSegmentation:
        return SceneSegmentation(self.scenes.subset(indices))

    def to(self, device: torch.device | str) -> SceneSegmentation:
        moved = self.scenes.to(device)
        return self if moved is self.scenes else SceneSegmentation(moved)

    def __repr__(self) -> str:
        return f"SceneSegmentation({self.scenes!r})"


def load_scene_splits(canvas: int = 128, seed: int = 0, sizes: tuple[int, int, int] = SCENE_SIZES,
                      device: torch.device | str = "cpu", masks: bool = True, **spec: Any) -> dict[str, DigitScenes]:
    """``{"train", "val", "test"}`` digit scenes on ``canvas`` pixels, each from the matching split of
    :func:`~.tensor.load_digits_splits` only; ``sizes`` = (train scenes per epoch, val, test);
    ``spec`` sets the other :class:`SceneSpec` fields. Training scenes are fresh each epoch; the test
    scenes use :data:`SCENES_TEST_SEED` whatever ``seed`` is. ``masks=False`` skips the per-pixel masks
    (a detector does not need them; a little faster and 16 KiB less per 128-px scene)."""
    scene_spec = SceneSpec(canvas=int(canvas), **spec)
    digits = load_digits_splits(image_size=8, seed=seed)
    seeds = {"train": seed, "val": seed, "test": SCENES_TEST_SEED}
    return {split: DigitScenes(digits[split], int(n), spec=scene_spec, seed=seeds[split], split=split,
                               fresh_each_epoch=split == "train", device=device, masks=masks)
            for split, n in zip(("train", "val", "test"), sizes)}
