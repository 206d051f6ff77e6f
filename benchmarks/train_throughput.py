"""Training throughput: this pipeline vs a plain reference loop, same model and batch, in one run.

The reference loop is what the torchvision reference scripts do: a Dataset that transforms each sample
on the CPU (pad-and-crop, flip, normalise), a DataLoader that collates them, an eager fp32 NCHW model.
Ours keeps the uint8 dataset on the training device, augments whole batches there (BatchAugment),
runs channels_last, keeps freed memory in-process on CPU (``engine/allocator.py``, as
``mobilenets train`` does), computes 5x5 depthwise weight gradients with inductor on CPU
(``fast_depthwise_grad``, ``models/depthwise.py``), and optionally bf16 autocast / torch.compile.

Each measurement runs in a fresh Python process, so a process-wide setting of one loop (the malloc
tuning, oneDNN state, a compile cache) cannot speed up or slow down the other.

Usage::

    python benchmarks/train_throughput.py                    # 32x32 V3-Small b128 and 224x224 b32, fp32 and bf16
    python benchmarks/train_throughput.py --sizes 32 --images 4096 --repeats 3 --json
    python benchmarks/train_throughput.py --sizes 32 --small-input off        # V3-Small as published
    python benchmarks/train_throughput.py --device cuda --amp bf16 --compile   # the GPU path
    python benchmarks/train_throughput.py --device cuda --amp bf16 --timm --sizes 224 --batches 128 \
        --model mobilenet_v3_large                                           # issue 7: vs timm's step

Prints images/s for both and the ratio ours / reference per setting (the median over ``--repeats``
alternating runs: a shared VM's speed drifts by 10% between minutes). Each measurement covers one
epoch of synthetic data after a short warm-up (excluded, so torch.compile's compile time is excluded).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from mobilenets import create_model
from mobilenets.data.augment import BatchAugment
from mobilenets.data.synthetic import make_synthetic
from mobilenets.data.tensor import TensorLoader
from mobilenets.engine.allocator import keep_freed_memory
from mobilenets.models.depthwise import use_fast_depthwise_backward

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
# Our model names -> timm's, for --timm (the architectures are the same: parameter counts are equal).
TIMM_NAMES = {
    "mobilenet_v1": "mobilenetv1_100",
    "mobilenet_v2": "mobilenetv2_100",
    "mobilenet_v3_small": "mobilenetv3_small_100",
    "mobilenet_v3_large": "mobilenetv3_large_100",
    "mobilenet_v4_conv_small": "mobilenetv4_conv_small",
    "mobilenet_v4_conv_medium": "mobilenetv4_conv_medium",
    "mobilenet_v4_hybrid_medium": "mobilenetv4_hybrid_medium",
}


class PerSampleDataset(torch.utils.data.Dataset):
    """torchvision-reference style: every sample transformed on its own, on the CPU."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, padding: int, normalize: bool = True) -> None:
        self.images, self.labels, self.padding, self.normalize = images, labels, padding, normalize
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float().div_(255)
        h, w = x.shape[-2:]
        p = self.padding
        x = F.pad(x[None], (p, p, p, p), mode="reflect")[0]
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        x = x[:, top : top + h, left : left + w]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        if not self.normalize:  # timm's prefetcher: uint8 to the device, normalised there
            return x.mul(255).round_().to(torch.uint8), int(self.labels[i])
        return (x - self.mean) / self.std, int(self.labels[i])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _train_steps(model, batches, optimizer, device, *, channels_last, amp, limit=None) -> int:
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else nullcontext()
    n = 0
    for step, (x, y) in enumerate(batches):
        if limit is not None and step >= limit:
            break
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ctx:
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += x.shape[0]
    _sync(device)
    return n


def _timed(model, batches, optimizer, device, *, channels_last: bool, amp: str, warmup: int) -> float:
    """Images/s over one epoch of ``batches()`` after ``warmup`` untimed steps (compile time excluded)."""
    _train_steps(model, batches(), optimizer, device, channels_last=channels_last, amp=amp, limit=warmup)
    start = time.perf_counter()
    n = _train_steps(model, batches(), optimizer, device, channels_last=channels_last, amp=amp)
    return n / (time.perf_counter() - start)


def _small_input(args, size: int) -> bool:
    return args.small_input == "on" or (args.small_input == "auto" and size <= 64)


def _padding(size: int) -> int:
    return 4 if size <= 64 else 16


def _images(args, size: int) -> int:
    return args.images or (8192 if size <= 64 else 1024)


def _per_sample_loader(args, data, size: int, batch: int, device: torch.device, *, normalize: bool):
    ds = PerSampleDataset(data.images, data.labels, padding=_padding(size), normalize=normalize)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=args.workers, persistent_workers=args.workers > 0,
                                       pin_memory=device.type == "cuda")


def reference_loop(args, size: int, batch: int, device: torch.device, data) -> float:
    model = create_model(args.model, num_classes=10, small_input=_small_input(args, size)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = _per_sample_loader(args, data, size, batch, device, normalize=True)

    def batches():
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return _timed(model, batches, opt, device, channels_last=False, amp="none", warmup=args.warmup)


def timm_loop(args, size: int, batch: int, device: torch.device, data) -> float:
    """timm's model and a timm-style step (its train.py with --amp --channels-last and the prefetcher).

    Per-sample CPU augmentation in DataLoader workers yields uint8 batches; the prefetcher copies them
    to the device without blocking and normalises there; the model is channels_last under autocast.
    """
    import timm  # optional: the GPU machine's image has it; this package never depends on it

    name = TIMM_NAMES.get(args.model)
    if name is None:
        raise SystemExit(f"--timm: no timm name for {args.model!r}; known: {sorted(TIMM_NAMES)}")
    model = timm.create_model(name, num_classes=10).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = _per_sample_loader(args, data, size, batch, device, normalize=False)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

    def batches():
        for x, y in loader:
            x = x.to(device, non_blocking=True).float().sub_(mean).div_(std)
            yield x, y.to(device, non_blocking=True)

    return _timed(model, batches, opt, device, channels_last=True, amp=args.amp, warmup=args.warmup)


def our_loop(args, size: int, batch: int, device: torch.device, data) -> float:
    model = create_model(args.model, num_classes=10, small_input=_small_input(args, size)).to(device)
    model.to(memory_format=torch.channels_last)
    if args.fast_depthwise_grad == "on" and device.type == "cpu":
        use_fast_depthwise_backward(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step_model = torch.compile(model) if args.compile else model
    augment = BatchAugment(crop="pad", padding=_padding(size), hflip=0.5, mean=MEAN, std=STD, seed=0).to(device)
    loader = TensorLoader(data, batch, shuffle=True, drop_last=True, device=device)

    def batches():
        for images, labels in loader:
            yield augment(images, labels)

    return _timed(step_model, batches, opt, device, channels_last=True, amp=args.amp, warmup=args.warmup)


def _measure(args, which: str, size: int, batch: int, amp: str, fast_dw: str = "off") -> float:
    """Images/s of one loop, measured in a fresh interpreter (see the module docstring)."""
    cmd = [sys.executable, __file__, "--_one", which, "--model", args.model, "--sizes", str(size),
           "--batches", str(batch), "--images", str(_images(args, size)),
           "--warmup", str(args.warmup), "--workers", str(args.workers), "--device", args.device, "--amp", amp,
           "--fast-depthwise-grad", fast_dw, "--small-input", args.small_input]
    if args.compile:
        cmd.append("--compile")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"the {which} loop failed (size {size}, batch {batch}, amp {amp}):\n{tail}")
    return float(done.stdout.strip().splitlines()[-1])


def _one(args) -> None:
    device = torch.device(args.device)
    size, batch = int(args.sizes), int(args.batches)
    data = make_synthetic(args.images, 10, size, 3, seed=0, learnable=True)
    if args._one == "reference":
        print(reference_loop(args, size, batch, device, data))
        return
    if args._one == "timm":
        print(timm_loop(args, size, batch, device, data))
        return
    if device.type == "cpu":
        keep_freed_memory()
    print(our_loop(args, size, batch, device, data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--sizes", default="32,224", help="comma-separated input sizes")
    parser.add_argument("--batches", default="128,32", help="batch size per input size")
    parser.add_argument("--images", type=int, default=0, help="images per epoch (default: 8192 at 32px, 1024 at 224px)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps, excluded from timing")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default="none,bf16", help="our loop's autocast modes, comma-separated (none, bf16)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--fast-depthwise-grad", default="on", choices=("on", "off", "both"),
                        help="our loop's inductor-compiled 5x5 depthwise weight gradients (CPU only)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per loop; the median is reported")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--small-input", default="auto", choices=("auto", "on", "off"),
                        help="small-input stem (auto: at <= 64 px); --timm forces off, timm has no such stem")
    parser.add_argument("--timm", action="store_true",
                        help="also time timm's model with a timm-style step (needs timm; issue 7's GPU comparison)")
    parser.add_argument("--_one", choices=("reference", "ours", "timm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        _one(args)
        return
    amps = [a.strip() for a in args.amp.split(",") if a.strip()]
    if bad := [a for a in amps if a not in ("none", "bf16")]:
        parser.error(f"--amp: unknown mode(s) {bad}; expected none or bf16")
    if args.timm:
        if args.small_input == "on":
            parser.error("--timm compares the same architecture, and timm's MobileNets have no small-input stem")
        args.small_input = "off"
    both = args.fast_depthwise_grad == "both"
    fast_modes = ["off", "on"] if both else [args.fast_depthwise_grad if args.device == "cpu" else "off"]
    results = []
    for size, batch in zip((int(s) for s in args.sizes.split(",")), (int(b) for b in args.batches.split(","))):
        variants = [(amp, fast) for amp in amps for fast in fast_modes]
        refs: list[float] = []
        runs: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
        timm_runs: dict[str, list[float]] = {amp: [] for amp in amps}
        for _ in range(args.repeats):
            refs.append(_measure(args, "reference", size, batch, "none"))
            for amp, fast in variants:
                runs[amp, fast].append(_measure(args, "ours", size, batch, amp, fast))
            if args.timm:
                for amp in amps:
                    timm_runs[amp].append(_measure(args, "timm", size, batch, amp))
        ref = statistics.median(refs)
        for (amp, fast), ours_runs in runs.items():
            ours = statistics.median(ours_runs)
            row = {"model": args.model, "size": size, "batch": batch, "amp": amp, "fast_depthwise_grad": fast,
                   "small_input": _small_input(args, size), "images": _images(args, size),
                   "reference_img_s": ref, "ours_img_s": ours, "ratio": ours / ref,
                   "runs": {"reference": refs, "ours": ours_runs}}
            if args.timm:
                timm_img_s = statistics.median(timm_runs[amp])
                row.update(timm_img_s=timm_img_s, ratio_vs_timm=ours / timm_img_s)
                row["runs"]["timm"] = timm_runs[amp]
            results.append(row)
    env = {"torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "compile": args.compile,
           "reference_workers": args.workers, "repeats": args.repeats}
    if args.json:
        print(json.dumps({"env": env, "results": results}))
        return
    print(f"env: {env}")
    timm_head = f" {'timm img/s':>11} {'vs timm':>7}" if args.timm else ""
    print(f"{'model':<20} {'size':>5} {'batch':>5} {'our amp':>7} {'fast dw':>7} {'reference img/s':>16} "
          f"{'ours img/s':>11} {'ratio':>6}{timm_head}")
    for r in results:
        timm_cols = f" {r['timm_img_s']:>11.1f} {r['ratio_vs_timm']:>6.2f}x" if args.timm else ""
        print(f"{r['model']:<20} {r['size']:>5} {r['batch']:>5} {r['amp']:>7} {r['fast_depthwise_grad']:>7} "
              f"{r['reference_img_s']:>16.1f} "
              f"{r['ours_img_s']:>11.1f} {r['ratio']:>5.2f}x{timm_cols}")


if __name__ == "__main__":
    main()
