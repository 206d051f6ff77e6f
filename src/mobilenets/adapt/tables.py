"""An adapted network as what every other command takes: a table file in the typed-row dialect + native weights.

Why a table and not a pickled module: the adapted network is an architecture like the built-in ones, so it is
written as one (``Bneck(input, k, exp, out, se, nl, s)`` rows, :mod:`mobilenets.models.table_file`), and
``create_model`` / ``train`` / ``export`` / ``quantize`` / ``bench`` / ``profile`` take the file like a model
name. The rows are the base table's with the adapted kernel, expansion, output and squeeze-excite columns;
widths are final (width multiplier 1, torchvision's V3 width rules, under which multiples of 8 resolve to
themselves), and :func:`save_network` checks that the file rebuilds exactly the network it describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..models.mobilenet import ArchSpec, MobileNet
from ..models.rows import Bneck, LastConv
from ..models.table_file import TableFile, load_table, write_table_file
from ..models.tables import MOBILENET_V3_LARGE, MOBILENET_V3_SMALL, Table

__all__ = ["TABLE_NAME", "adapted_table", "base_table", "load_network", "save_network"]

TABLE_NAME = "model.yaml"
_V3 = {"mobilenet_v3_small": MOBILENET_V3_SMALL, "mobilenet_v3_large": MOBILENET_V3_LARGE}
# The base's keywords a table file keeps (widths are written out, so width_mult / reduced_tail are not).
_KEPT_OPTIONS = ("small_input", "use_hswish", "use_se", "minimalistic", "dilated")


def base_table(base: nn.Module) -> tuple[str, Table, dict[str, Any]]:
    """The family, table and resolver options ``base`` was built from (MobileNetV3 tables only)."""
    name = getattr(base, "model_name", None)
    kwargs = dict(getattr(base, "model_kwargs", {}) or {})
    if name in _V3:
        return name, _V3[name], {k: kwargs[k] for k in _KEPT_OPTIONS if k in kwargs}
    if name == "mobilenet_table":
        tf = load_table(kwargs.get("table"))
        if tf.family in _V3:
            options = {**tf.options, **{k: kwargs[k] for k in _KEPT_OPTIONS if k in kwargs}}
            return tf.family, tf.table, options
        name = f"a {tf.family} table"
    raise ValueError(f"adaptation writes MobileNetV3 table rows (Bneck); {name!r} is not one: adapt "
                     f"mobilenet_v3_small, mobilenet_v3_large or a table file of theirs")


def adapted_table(base: nn.Module, arch: ArchSpec, *, note: str | None = None) -> TableFile:
    """``arch`` (an adaptation of ``base``) as a table file: the base's rows with its kernels and widths."""
    family, table, options = base_table(base)
    rows = [r for stage in table.stages for r in stage]
    blocks = arch.blocks
    if len(rows) != len(blocks):
        raise ValueError(f"{family}: {len(blocks)} blocks but {len(rows)} table rows")
    new_rows: list[Any] = []
    for row, spec in zip(rows, blocks, strict=True):
        if isinstance(row, Bneck):
            exp = int(spec.mid_chs or spec.in_chs) if spec.type == "ir" else spec.in_chs
            new_rows.append(row._replace(k=spec.kernel, exp=exp, out=spec.out_chs, se=spec.se_chs is not None))
        elif isinstance(row, LastConv):
            new_rows.append(row._replace(out=spec.out_chs))
        else:
            raise ValueError(f"{family}: cannot write a {type(row).__name__} row")
    stages, k = [], 0
    for stage in table.stages:
        stages.append(tuple(new_rows[k:k + len(stage)]))
        k += len(stage)
    new_table = Table(table.stem._replace(out=arch.stem.out_chs), tuple(stages), arch.head_hidden)
    options = {**options, "small_input": arch.small_input, "width_convention": "torchvision"}
    return TableFile(family, new_table, options, name=f"{family} (adapted)", note=note)


def save_network(model: MobileNet, directory: Path, base: nn.Module, *, note: str | None = None) -> Path:
    """Write ``model`` as ``DIR/model.yaml`` + native weights, checking the file rebuilds it exactly."""
    from ..weights import create_model

    directory.mkdir(parents=True, exist_ok=True)
    table_path = write_table_file(adapted_table(base, model.arch, note=note), directory / TABLE_NAME)
    rebuilt = create_model(str(table_path), num_classes=model.num_classes, in_chans=model.in_chans)
    if (rebuilt.arch.blocks != model.arch.blocks or rebuilt.arch.stem.out_chs != model.arch.stem.out_chs
            or rebuilt.arch.head_hidden != model.arch.head_hidden):
        raise AssertionError(f"{table_path} does not rebuild the adapted network")
    rebuilt.load_state_dict(model.state_dict())
    for m_new, m_old in zip(rebuilt.modules(), model.modules(), strict=True):
        if isinstance(m_new, nn.modules.batchnorm._BatchNorm):
            m_new.eps, m_new.momentum = m_old.eps, m_old.momentum
    rebuilt.pretrained_cfg = {**rebuilt.pretrained_cfg, **{k: model.pretrained_cfg[k] for k in
                                                           ("mean", "std", "input_size") if k in model.pretrained_cfg}}
    class_names = getattr(base, "class_names", None)
    rebuilt.save_pretrained(str(directory), class_names=class_names)
    return directory


def load_network(directory: Path) -> MobileNet:
    """A network :func:`save_network` wrote (architecture from its config, weights from its safetensors)."""
    from ..weights import from_pretrained

    return from_pretrained(str(directory)).eval()  # type: ignore[return-value]
