"""A latency lookup table: each piece of a network timed alone in a runtime, cached on disk.

Why: NetAdapt (Yang et al. 2018) proposes dozens of slightly narrower networks per iteration and needs
the latency of each. Exporting and timing every candidate whole takes seconds to minutes (an ExecuTorch
lowering alone is half a minute), but a candidate differs from its parent in one or two blocks, so the
latency of a network is *predicted* as the sum of its parts' latencies, each measured once per distinct
shape (:class:`Part`: the stem, every block, the head) and kept in a :class:`LatencyTable`. A later
candidate, or a later run on the same machine, reads the entries back instead of measuring again.

Why ``predicted = sum(parts) + one constant`` is enough: timing a part alone adds what every runtime call
costs whatever it computes (dispatch, input and output copies, the Python wrapper) and loses what
crossing parts inside one graph costs or saves (cache reuse, fused boundaries). The call cost is
removed from every entry: the same backend runs a one-operator graph (a ReLU) on the part's input,
and that time is subtracted (each is its own cached entry). Without it, at 32 px and batch 1 the call
cost is about a third of a MobileNetV3-Small's blocks, the constant comes out near minus the call cost
times the number of parts, and a network of 8-channel blocks is predicted to run in negative time.
What remains differs little between candidates of one network, because adaptation changes the widths of
the parts, never how many there are; so the constant, measured once as the whole network
(:func:`measure_network_ms`, through the real ``export_model`` path of ``deploy.bench``) minus the sum of
its parts, absorbs it.

Each part runs in the runtime the whole network would: eager PyTorch as ``deploy.bench``'s eager backend
runs it, a file backend with BatchNorm folded (as every whole-model export) through the format's writer
in ``deploy.export.EXPORTERS`` and its reader ``deploy.runtimes.load_artifact``, timed on the predictor's
own call. ONNX is written by the TorchScript exporter (``dynamo=False``, 0.03 s a block against 1.8 s
for the dynamo one, which the whole-model export uses; both hand ONNX Runtime the same operators, and
its graph optimisations remove the Identity nodes only the former writes); the dynamo exporter is the
fallback when the TorchScript one fails.

The cache is one JSON file per (backend, runtime versions, threads, batch, CPU): a change of any of
them is another file name, so entries measured under other conditions are never mixed in.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["LUT_BACKENDS", "STATISTICS", "LatencyTable", "Part", "arch_parts", "measure_network_ms", "network_parts"]

#: The fp32 runtimes of ``deploy.bench`` a table can be measured in (the reduced-precision, int8 and
#: compile backends are left out: their graph-level passes do not decompose into parts).
LUT_BACKENDS: tuple[str, ...] = ("eager", "onnxruntime", "openvino", "executorch", "litert", "ncnn", "mnn")

_FORMATS = {"onnxruntime": "onnx", "openvino": "openvino", "executorch": "executorch", "litert": "litert",
            "ncnn": "ncnn", "mnn": "mnn"}
_SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "executorch": ".pte", "litert": ".tflite", "ncnn": ".ncnn.param",
             "mnn": ".mnn"}
_KINDS = ("stem", "block", "head")
FORMAT_VERSION = 4  # 2: per-call cost removed; 3: the statistic in the header; 4: entries timed against a yardstick
#: Per-entry timing: short, since an entry is one block (tens of microseconds to a few milliseconds).
DEFAULT_TIMING: dict[str, Any] = {"warmup": 3, "warmup_s": 0.1, "min_runs": 10, "min_time_s": 0.1}


# ------------------------------------------------------------------------------------------ parts
@dataclass(frozen=True)
class Part:
    """One separately timed piece of a network: its kind, place, what decides its latency and its input.

    ``spec`` of a stem or block is its ``BlockSpec`` as a dict (without ``nominal_stride``, which changes
    nothing built, and with ``skip`` resolved) plus the network's ``pad_type``; a head's is
    ``num_features``, ``hidden`` (``None``: no hidden layer), ``act``, ``norm`` and ``num_classes``.
    """

    kind: str
    index: int
    spec: dict[str, Any]
    input_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            from .._validate import did_you_mean

            raise ValueError(f"unknown part kind {self.kind!r}{did_you_mean(self.kind, _KINDS)}; "
                             f"expected one of {', '.join(_KINDS)}")
        shape = tuple(self.input_shape)
        if len(shape) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"input_shape={self.input_shape!r} invalid; expected (C, H, W) positive integers")
        object.__setattr__(self, "input_shape", shape)

    @property
    def key(self) -> str:
        """Canonical JSON of kind, spec and input shape: equal pieces anywhere in any network share an entry."""
        return json.dumps({"kind": self.kind, "spec": self.spec, "input_shape": list(self.input_shape)},
                          sort_keys=True, separators=(",", ":"))

    def build(self) -> nn.Module:
        """A fresh eval module computing exactly this piece (seeded init; the caller's RNG is untouched).

        Its BatchNorms have PyTorch's default eps, whatever the network's: eps decides no latency, so it is
        not in the key and equal pieces of families with other eps share one entry.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = _build_head(self.spec) if self.kind == "head" else _build_block(self.spec)
        return module.eval()


def _build_block(spec: dict[str, Any]) -> nn.Module:
    from ..models.blocks import BlockSpec, build_block
    from ..models.layers import norm_layer_for

    fields = {k: v for k, v in spec.items() if k != "pad_type"}
    # BatchNorm's eps / momentum change no latency (folded for a file backend, one kernel either way eager).
    return build_block(BlockSpec(**fields), norm_layer_for(1e-5, 0.1), pad_type=str(spec.get("pad_type", "")))


def _build_head(spec: dict[str, Any]) -> nn.Module:
    """Pool -> flatten -> [Linear (+ BatchNorm1d) + act] -> classifier, as ``MobileNet._build_head``."""
    from ..models.layers import create_act, get_act_layer

    features, hidden, classes = int(spec["num_features"]), spec.get("hidden"), int(spec["num_classes"])
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
    if hidden and spec.get("norm"):
        layers.append(nn.Sequential(nn.Linear(features, hidden, bias=False), nn.BatchNorm1d(hidden),
                                    create_act(get_act_layer(spec["act"]))))
    elif hidden:
        layers.append(nn.Sequential(nn.Linear(features, hidden), create_act(get_act_layer(spec["act"]))))
    layers.append(nn.Linear(hidden or features, classes) if classes > 0 else nn.Identity())
    return nn.Sequential(*layers)


def _block_spec_dict(spec: Any, pad_type: str) -> dict[str, Any]:
    d = dataclasses.asdict(spec)
    d.pop("nominal_stride", None)
    d["skip"] = bool(spec.has_skip)  # None / True / False that build the same module give the same key
    d["pad_type"] = pad_type
    return d


def arch_parts(arch: Any, *, in_chans: int, num_classes: int, input_size: int) -> list[Part]:
    """The parts of the classifier an ``ArchSpec`` builds, without building it (what adaptation proposes).

    Spatial sizes follow each block's built ``stride`` (``small_input`` changed those; a dilated block
    has stride 1 and keeps the size): every conv pads so that the output side is ``ceil(side / stride)``.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size={input_size!r} invalid; expected a positive integer")
    pad = str(arch.pad_type)
    stem = arch.stem.with_(in_chs=in_chans)
    side = input_size
    parts = [Part("stem", 0, _block_spec_dict(stem, pad), (in_chans, side, side))]
    side = -(-side // stem.stride)
    channels = stem.out_chs
    for i, spec in enumerate(arch.blocks, start=1):
        parts.append(Part("block", i, _block_spec_dict(spec, pad), (spec.in_chs, side, side)))
        side, channels = -(-side // spec.stride), spec.out_chs
    hidden = int(arch.head_hidden) if arch.head_hidden else None
    head = {"num_features": channels, "hidden": hidden, "act": arch.head_act if hidden else None,
            "norm": bool(hidden and arch.head_norm), "num_classes": int(num_classes)}
    parts.append(Part("head", len(parts), head, (channels, side, side)))
    return parts


def network_parts(model: nn.Module, input_size: int) -> list[Part]:
    """Stem, every block and the head (global pool + hidden layer + classifier) of a MobileNet classifier."""
    arch = getattr(model, "arch", None)
    if arch is None or not hasattr(arch, "stages") or not hasattr(model, "global_pool"):
        raise ValueError(f"{type(model).__name__} is not a mobilenets MobileNet classifier (no arch / head); "
                         "expected a model from mobilenets.create_model")
    if getattr(model, "features_only", False):
        raise ValueError("a features_only model has no head; expected a classifier")
    return arch_parts(arch, in_chans=int(model.in_chans), num_classes=int(model.num_classes),
                      input_size=input_size)


# ------------------------------------------------------------------------------------------ backends
def _check_backend(backend: str) -> Any:
    """The bench ``Backend`` row of ``backend``; one-line errors for an unknown or uninstalled one."""
    from .._validate import did_you_mean
    from ..deploy.bench import BACKENDS

    if backend not in LUT_BACKENDS:
        raise ValueError(f"unknown latency-table backend {backend!r}{did_you_mean(backend, LUT_BACKENDS)}; "
                         f"expected one of {', '.join(LUT_BACKENDS)}")
    row = BACKENDS[backend]
    row.check_installed()  # MissingExtraError naming the pip extra
    return row


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} invalid; expected a positive integer")
    return value


def _dist_version(module: str) -> str:
    """The installed version of the distribution providing ``module`` (``"?"`` when it cannot be told)."""
    try:
        return importlib_metadata.version(module)
    except importlib_metadata.PackageNotFoundError:
        pass
    for dist in importlib_metadata.packages_distributions().get(module, []):
        try:
            return importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return "?"


def _export_onnx_fast(graph: nn.Module, x: torch.Tensor, opts: Any, out: Path, meta: Any) -> None:
    """The TorchScript ONNX exporter (fast; see the module docstring), the dynamo one if it fails."""
    from ..deploy.capture import add_onnx_metadata, export_onnx, quiet

    try:
        with quiet(), torch.no_grad():
            torch.onnx.export(graph, (x,), str(out), dynamo=False, opset_version=20, input_names=["input"],
                              output_names=["logits"])
    except Exception:  # an operator the legacy exporter lacks: the whole-model path's exporter then
        export_onnx(graph, x, opts, out, meta)
        return
    add_onnx_metadata(out, meta)


def _file_runner(module: nn.Module, x: torch.Tensor, fmt: str, threads: int, workdir: Path,
                 keep: list[Any]) -> Callable[[torch.Tensor], Any]:
    """Fold BatchNorm, write ``module`` in ``fmt``, load it in its runtime: its predictor's call."""
    from ..deploy.capture import ExportOptions
    from ..deploy.export import EXPORTERS
    from ..deploy.fuse import fuse_for_inference
    from ..deploy.metadata import ArtifactMetadata, write_metadata
    from ..deploy.runtimes import load_artifact

    graph = fuse_for_inference(module)
    batch = 1 if fmt == "ncnn" else int(x.shape[0])  # ncnn runs one image at a time (as deploy.bench's files)
    example = x[:batch].contiguous()
    with torch.no_grad():
        per_image = graph(example)[0].numel()
    c, h, w = (int(d) for d in x.shape[1:])
    # A classifier's metadata with one "class" per output value: the readers check the output's size by it.
    meta = ArtifactMetadata(format=fmt, input_size=(c, h, w), mean=(0.0,) * c, std=(1.0,) * c,
                            num_classes=int(per_image), batch=batch, source="mobilenets.analysis.lut")
    out = workdir / f"part{_SUFFIXES[fmt]}"
    opts = ExportOptions(batch, None, h)
    (_export_onnx_fast if fmt == "onnx" else EXPORTERS[fmt])(graph, example, opts, out, meta)
    write_metadata(out, meta)
    predictor = load_artifact(out, threads=threads)
    keep.append(predictor)
    return predictor._run if predictor.metadata.batch in (None, x.shape[0]) else predictor


def _part_runner(backend: str, module: nn.Module, x: torch.Tensor, threads: int, workdir: Path,
                 keep: list[Any]) -> Callable[[torch.Tensor], Any]:
    if backend == "eager":
        from ..deploy.bench import BACKENDS, BuildContext

        # Exactly deploy.bench's eager runner (inference mode, BatchNorm unfused), on the part.
        return BACKENDS["eager"].build(BuildContext(module, int(x.shape[0]), int(x.shape[-1]), threads, workdir, []))
    return _file_runner(module, x, _FORMATS[backend], threads, workdir, keep)


#: How one round's per-call times become one number. ``min`` is the default: on a shared 2-core VM the
#: median of one network moved between 0.92 and 1.8 ms from second to second while the least call of
#: any few seconds stayed within 0.80-0.85 ms, so only the minimum made a sum of parts predict a whole
#: network measured minutes later. ``median`` is the typical call on a quiet device (what ``bench`` reports).
STATISTICS: tuple[str, ...] = ("min", "median")


def _round_ms(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, timing: dict[str, Any], statistic: str) -> float:
    from ..deploy.bench import time_callable

    times = time_callable(fn, x, **timing)
    return 1e3 * (min(times) if statistic == "min" else statistics.median(times))


def _spread_least_ms(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, timing: dict[str, Any], statistic: str,
                     rounds: int, gap_s: float) -> float:
    """The least of ``rounds`` rounds' ``statistic``, idling ``gap_s`` between them. Why the least:
    interference only ever adds time (another process, a shared VM's slow phases, which last a few
    seconds), so the least of rounds spread over more than one phase estimates the undisturbed cost."""
    best = math.inf
    for i in range(max(rounds, 1)):
        if i and gap_s > 0:
            time.sleep(gap_s)
        best = min(best, _round_ms(fn, x, timing, statistic))
    return best


def _check_statistic(statistic: str) -> str:
    if statistic not in STATISTICS:
        from .._validate import did_you_mean

        raise ValueError(f"unknown latency statistic {statistic!r}{did_you_mean(statistic, STATISTICS)}; "
                         f"expected one of {', '.join(STATISTICS)}")
    return statistic


#: Rounds of a paired entry (yardstick, part, yardstick) and the seconds of each of the three timings.
PAIRED_ROUNDS = 7
PAIRED_CHUNK_S = 0.02
_YARDSTICK_KEY = json.dumps({"kind": "yardstick"})
#: Rounds and the idle seconds between them of the yardstick's one absolute timing per cache file (8 s).
YARDSTICK_ROUNDS = (20, 0.3)
_YARDSTICK_SHAPE = (16, 32, 32)


def _yardstick() -> nn.Module:
    """The fixed piece every entry is timed against: an inverted residual (16 -> 64 -> 16 channels, 3x3
    depthwise, 32 x 32), about as costly as a MobileNet block at the digits' input size."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = nn.Sequential(nn.Conv2d(16, 64, 1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1, groups=64),
                               nn.ReLU(), nn.Conv2d(64, 16, 1))
    return module.eval()


def _paired_ratio(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, ref: Callable[[torch.Tensor], Any],
                  ref_x: torch.Tensor, statistic: str, pairing: tuple[int, float]) -> float:
    """``fn``'s time over ``ref``'s, timed in alternation: the median over ``pairing = (rounds, seconds)``
    rounds of (yardstick, ``fn``, yardstick), each timing at least that many seconds.

    Why paired: this machine's speed drifts (a block's least call moved between 0.107 and 0.169 ms from
    one second to the next) while the ratio of two short pieces timed side by side stayed within a few
    per cent (1.72-1.76 in the same seconds), so an entry is measured as a ratio to a fixed yardstick and
    turned into milliseconds by the yardstick's own least time, measured once per table.
    """
    rounds, seconds = pairing
    chunk = {"warmup": 1, "warmup_s": 0.0, "min_runs": 3, "min_time_s": seconds}
    ratios = []
    for _ in range(max(rounds, 1)):
        before = _round_ms(ref, ref_x, chunk, statistic)
        mine = _round_ms(fn, x, chunk, statistic)
        after = _round_ms(ref, ref_x, chunk, statistic)
        ratios.append(mine / max(min(before, after), 1e-9))
    return statistics.median(ratios)


# ------------------------------------------------------------------------------------------ the table
class LatencyTable:
    """Latency (ms) of each :class:`Part` in one backend at one thread count and batch, cached on disk.

    ``path`` names the cache file, ``<cache_dir>/<backend>-t<threads>-b<batch>-<hash>.json``, the hash
    covering the header (backend, runtime and torch versions, threads, batch, CPU, format version), so a
    change of any of them reads and writes another file. ``cache_dir`` defaults to ``lut/`` beside
    ``deploy.best``'s cache (``$MOBILENETS_CACHE`` moves both). ``timing`` overrides
    :data:`DEFAULT_TIMING` (``deploy.bench.time_callable`` keywords: tests make an entry cost milliseconds).
    ``log`` hears one line per event worth knowing (a cache file ignored); without it they are warnings.
    ``statistic`` is how one timing's calls become a number (:data:`STATISTICS`); ``pairing`` the rounds and
    seconds of the yardstick-paired timing of each entry (default :data:`PAIRED_ROUNDS`,
    :data:`PAIRED_CHUNK_S`; see :func:`_paired_ratio`).
    """

    def __init__(self, backend: str, *, threads: int, batch: int = 1, cache_dir: Path | None = None,
                 log: Callable[[str], None] | None = None, timing: dict[str, Any] | None = None,
                 statistic: str = "min", pairing: tuple[int, float] | None = None) -> None:
        row = _check_backend(backend)
        rounds, seconds = pairing if pairing is not None else (PAIRED_ROUNDS, PAIRED_CHUNK_S)
        self.pairing = (int(rounds), float(seconds))
        self.backend = backend
        self.statistic = _check_statistic(statistic)
        self.threads = _check_count("threads", threads)
        self.batch = _check_count("batch", batch)
        self.timing = {**DEFAULT_TIMING, **(timing or {})}
        self._log = log
        self.header = self._header(row)
        digest = hashlib.sha256(json.dumps(self.header, sort_keys=True).encode()).hexdigest()[:16]
        root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self.path: Path = root / f"{backend}-t{self.threads}-b{self.batch}-{digest}.json"
        self.measured = 0
        """Entries measured (not read from the cache file) by this table in this process."""
        self._entries: dict[str, float] = self._read()
        self._from_disk = set(self._entries)
        self._reused: set[str] = set()
        self._yard: tuple[Callable[[torch.Tensor], Any], torch.Tensor] | None = None
        self._yard_keep: list[Any] = []
        self._yard_dir: tempfile.TemporaryDirectory[str] | None = None

    def _header(self, row: Any) -> dict[str, Any]:
        from ..deploy.best import cpu_description

        modules = dict.fromkeys(m for m, _ in row.requires)
        versions = {"torch": torch.__version__, "mobilenets": _dist_version("mobilenets"),
                    **{m: _dist_version(m) for m in modules}}
        return {"format_version": FORMAT_VERSION, "backend": self.backend, "versions": versions,
                "threads": self.threads, "batch": self.batch, "statistic": self.statistic, "cpu": cpu_description()}

    @property
    def reused(self) -> int:
        """Distinct entries asked for in this process that the cache file already held."""
        return len(self._reused)

    def __len__(self) -> int:
        return len(self._entries)

    def summary(self) -> str:
        """One line for a progress report: entries reused and measured, and the cache file."""
        return (f"latency table {self.backend} ({self.threads} threads, batch {self.batch}): "
                f"{self.reused} entries reused, {self.measured} measured; {self.path}")

    def _say(self, message: str) -> None:
        if self._log is not None:
            self._log(message)
        else:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _load_entries(self) -> tuple[dict[str, float] | None, str]:
        """The file's entries, or ``None`` and why the file cannot be used."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return None, f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            return None, "not a latency table (no entries object)"
        if data.get("header") != self.header:
            return None, "its header (backend, versions, threads, batch, CPU) differs from this table's"
        entries = data["entries"]
        if not all(isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                   and math.isfinite(v) and v >= 0 for k, v in entries.items()):
            return None, "an entry is not a finite non-negative number of milliseconds"
        return {k: float(v) for k, v in entries.items()}, ""

    def _read(self) -> dict[str, float]:
        if not self.path.is_file():
            return {}
        entries, why = self._load_entries()
        if entries is None:
            self._say(f"ignoring latency-table cache {self.path}: {why}; measuring again (it will be rewritten)")
            return {}
        return entries

    def _save(self) -> None:
        """Write every entry atomically, merged with what another process may have added meanwhile."""
        from ..fileio import atomic_write_text

        if self.path.is_file():
            theirs, _ = self._load_entries()
            self._from_disk |= set(theirs or ()) - set(self._entries)
            self._entries = {**(theirs or {}), **self._entries}
        text = json.dumps({"header": self.header, "entries": self._entries}, indent=1, sort_keys=True)
        try:
            atomic_write_text(self.path, text)
        except OSError as exc:
            self._say(f"could not write latency-table cache {self.path}: {exc}")

    def part_ms(self, part: Part) -> float:
        """The part's latency (ms, by the table's statistic): from the cache, else exported alone, timed and saved at once."""
        key = part.key
        if key in self._entries:
            if key in self._from_disk:
                self._reused.add(key)
            return self._entries[key]
        try:
            ms = self._measure(part)
        except ImportError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RuntimeError(f"latency-table entry for {part.kind} {part.index} {part.input_shape} on "
                               f"{self.backend} failed: {type(exc).__name__}: {first}") from exc
        self._entries[key] = ms
        self.measured += 1
        self._save()  # after each entry: a killed run keeps what it measured
        return ms

    def call_ms(self, input_shape: tuple[int, int, int]) -> float:
        """The backend's cost of one call on an input of this shape: a one-ReLU graph (cached like a part)."""
        key = json.dumps({"kind": "call", "input_shape": list(input_shape)})
        if key not in self._entries:
            self._entries[key] = self._time(nn.ReLU().eval(), input_shape)
            self._save()
        elif key in self._from_disk:
            self._reused.add(key)
        return self._entries[key]

    def _measure(self, part: Part) -> float:
        """The part alone, less the backend's call cost on its input (never below zero)."""
        return max(self._time(part.build(), part.input_shape) - self.call_ms(part.input_shape), 0.0)

    def _time(self, module: nn.Module, input_shape: tuple[int, int, int]) -> float:
        """``module``'s latency on this input: its ratio to the yardstick (timed in alternation) times the
        yardstick's milliseconds (see :func:`_paired_ratio`)."""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        keep: list[Any] = []
        try:
            ref, ref_x, yard_ms = self._yardstick()
            x = torch.randn(self.batch, *input_shape, generator=torch.Generator().manual_seed(0))
            with tempfile.TemporaryDirectory(prefix="mobilenets-lut-") as tmp:
                fn = _part_runner(self.backend, module, x, self.threads, Path(tmp), keep)
                _round_ms(fn, x, self.timing, self.statistic)  # warm-up: first calls allocate and plan
                ms = _paired_ratio(fn, x, ref, ref_x, self.statistic, self.pairing) * yard_ms
                keep.clear()
            return ms
        finally:
            torch.set_num_threads(previous)

    def _yardstick(self) -> tuple[Callable[[torch.Tensor], Any], torch.Tensor, float]:
        """The yardstick's runner (built once per table, kept open) and its milliseconds (once per cache file:
        the least of :data:`YARDSTICK_ROUNDS` rounds spread over seconds, since every entry of the file is scaled
        by this one number, it must not fall in one slow phase)."""
        if self._yard is None:
            self._yard_dir = tempfile.TemporaryDirectory(prefix="mobilenets-lut-yardstick-")
            x = torch.randn(self.batch, *_YARDSTICK_SHAPE, generator=torch.Generator().manual_seed(0))
            fn = _part_runner(self.backend, _yardstick(), x, self.threads, Path(self._yard_dir.name), self._yard_keep)
            self._yard = (fn, x)
        fn, x = self._yard
        if _YARDSTICK_KEY not in self._entries:
            rounds, gap = YARDSTICK_ROUNDS if self.pairing[1] > 0 else (1, 0.0)
            self._entries[_YARDSTICK_KEY] = _spread_least_ms(fn, x, self.timing, self.statistic, rounds, gap)
            self._save()
        return fn, x, self._entries[_YARDSTICK_KEY]

    def predict(self, parts: Sequence[Part], constant_ms: float = 0.0) -> float:
        """Predicted network latency: exactly ``sum(part_ms(p) for p in parts) + constant_ms``."""
        return sum(self.part_ms(p) for p in parts) + constant_ms


def _default_cache_dir() -> Path:
    from ..deploy.best import _best_cache_path

    return _best_cache_path().parent / "lut"


def measure_network_ms(model: nn.Module, input_size: int, backend: str, *, threads: int, batch: int = 1,
                       repeats: int = 8, timing: dict[str, Any] | None = None, statistic: str = "min",
                       gap_s: float = 0.3) -> float:
    """The WHOLE network's latency (ms, its least call by default; see :data:`STATISTICS`) through
    ``deploy.bench``'s backend: the real export path.

    Built once (export + load), then timed ``repeats`` times ``gap_s`` apart; the least of the runs'
    ``statistic`` (:func:`_spread_least_ms`, as the yardstick), so one slow phase of a shared machine does
    not move the constant a table's predictions are anchored to, nor a measurement compared with them.
    The caller's model is not changed (a copy is put in eval mode).
    """
    from ..deploy.bench import BuildContext

    row = _check_backend(backend)
    threads, batch = _check_count("threads", threads), _check_count("batch", batch)
    repeats = _check_count("repeats", repeats)
    statistic = _check_statistic(statistic)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 8:
        raise ValueError(f"input_size={input_size!r} invalid; expected an integer >= 8")
    timing = {"warmup": 5, "warmup_s": 0.2, "min_runs": 20, "min_time_s": 0.5, **(timing or {})}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="mobilenets-lut-net-") as tmp:
            ctx = BuildContext(copy.deepcopy(model).eval(), batch, input_size, threads, Path(tmp), [])
            fn = row.build(ctx)
            x = ctx.example
            ms = _spread_least_ms(fn, x, timing, statistic, repeats, gap_s)
            ctx.keep.clear()
        return float(ms)
    finally:
        torch.set_num_threads(previous)
