"""Architecture tables as files: the typed-row dialect of :mod:`.tables` in YAML, read without running it.

Why: a table a program made (NetAdapt's narrowed widths) or a person wrote must build, train, profile,
export and bench like a registered model without a line of Python. The file keeps each row as the call
:mod:`.tables` writes (``Bneck(56, 3, 72, 24, False, "RE", 2)``), so it reads column by column against the
paper; parsing walks each row's ``ast`` and accepts only a row type of :mod:`.rows` called with constants:
nothing in a file is ever evaluated. ``family`` names the resolver (and so the width rules) that reads the
rows, and ``options`` its keywords, so a file's rows resolve exactly as a built-in table's do.

``create_model("model.yaml", ...)`` is ``create_model("mobilenet_table", table=<the file's dict>, ...)``
(:mod:`.registry` does the translation in one place); the model records the dict, so a saved model's
``config.json`` rebuilds it without the file.
"""

from __future__ import annotations

import ast
import json
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._validate import check_choice, did_you_mean
from ..fileio import atomic_write_bytes
from .mobilenet import ArchSpec
from .resolve import resolve_mobilenet_v1, resolve_mobilenet_v2, resolve_mobilenet_v3, resolve_mobilenet_v5
from .rows import DW, MQA, UIB, Bneck, Bottleneck, Conv, FusedIB, LastConv, MaxPool, Res, Row
from .tables import MOBILENET_V3_SMALL, Table

__all__ = ["FAMILIES", "FORMAT", "ROW_TYPES", "SUFFIXES", "VERSION", "TableFile", "dump_table_file", "is_table_path",
           "load_table", "parse_row", "parse_table_file", "read_table_file", "resolve_table_file", "row_text",
           "table_from_dict", "table_to_dict", "write_table_file"]

FORMAT = "mobilenets-table"
VERSION = 1
SUFFIXES = (".yaml", ".yml", ".json")
#: Every row type a row text may name (all of :mod:`.rows`); a family accepts the few its resolver reads.
ROW_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Conv, DW, Bottleneck, Bneck, LastConv, FusedIB, UIB, MQA,
                                                             MaxPool, Res)}
_KEYS = ("format", "version", "family", "name", "note", "options", "stem", "stages", "head")
_BOOL = (True, False)
_POSITIVE_INT = ("an integer >= 1",)  # an option taking any positive integer (a width, a grid size)
_POSITIVE_OR_NONE = ("a number > 0 or None",)  # an initial scale that may be absent
_KINDS = {int: "an integer", float: "a number", bool: "True or False", str: "text", type(None): "None"}


@dataclass(frozen=True)
class _Family:
    """What a family's resolver reads: its row types, its keywords (with allowed values), whether it has a
    hidden head width, and its columns (for the file's header)."""

    rows: tuple[type, ...]
    options: dict[str, tuple[Any, ...]]
    head: bool
    columns: str


_V3 = _Family((Bneck, LastConv), {"small_input": _BOOL, "width_convention": ("torchvision", "timm", "keras"),
                                  "reduced_tail": _BOOL, "dilated": _BOOL, "minimalistic": _BOOL, "use_se": _BOOL,
                                  "use_hswish": _BOOL}, True,
              "Bneck(input, k, exp, out, se, nl, s), LastConv(out, nl) (nl: RE / HS)")
FAMILIES: dict[str, _Family] = {
    "mobilenet_v1": _Family((DW,), {"small_input": _BOOL, "separable": _BOOL, "act": ("relu", "relu6")}, False,
                            "DW(s, out, n)"),
    "mobilenet_v2": _Family((Bottleneck, LastConv), {"small_input": _BOOL}, False,
                            "Bottleneck(t, c, n, s), then LastConv(out)"),
    "mobilenet_v3_large": _V3,
    "mobilenet_v3_small": _V3,
    # variant: whose input size and normalisation the network takes (300m: [0, 1] pixels at 768, base: 0.5 / 0.5
    # at 256); encoder: no head, forward returns the MSFA grid (TF "same" padding, as Gemma 3n's encoder)
    "mobilenet_v5": _Family((FusedIB, UIB, MQA), {"variant": ("base", "300m"), "small_input": _BOOL, "encoder": _BOOL,
                                                  "msfa_chs": _POSITIVE_INT, "msfa_grid": _POSITIVE_INT,
                                                  "layer_scale": _POSITIVE_OR_NONE}, False,
                            "FusedIB(k, e, out, s), UIB(a, k, e, out, s, n), MQA(heads, key_dim, kv_stride, out, n)"),
}


@dataclass(frozen=True)
class TableFile:
    """An architecture table with what it takes to resolve it: the family whose resolver reads the rows
    and the keywords it was made with. Checked on construction (rows the family reads, strides, V3's input
    column), so a written file always reads back."""

    family: str
    table: Table
    options: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        table = Table(self.table.stem, tuple(tuple(stage) for stage in self.table.stages), self.table.head)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "options", dict(self.options))
        _check_table(self.family, table, self.options, self.name or "TableFile")


# ----------------------------------------------------------------------------------------------- rows
def _value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def row_text(row: Row) -> str:
    """``row`` as the call :mod:`.tables` writes: positional columns, trailing defaults left out, ``n=`` named."""
    defaults = row._field_defaults
    named_n = "n" in defaults  # an optional repeat count is written n=..., as in the tables
    names = [f for f in row._fields if not (named_n and f == "n")]
    keep = len(names)
    while keep and names[keep - 1] in defaults and getattr(row, names[keep - 1]) == defaults[names[keep - 1]]:
        keep -= 1
    parts = [_value_text(getattr(row, f)) for f in names[:keep]]
    if named_n and row.n != defaults["n"]:
        parts.append(f"n={_value_text(row.n)}")
    return f"{type(row).__name__}({', '.join(parts)})"


def _constant(node: ast.expr, where: str) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, str, bool, type(None)):
        return node.value
    raise ValueError(f"{where}: {ast.unparse(node)} is not a constant; expected numbers, strings, True/False or "
                     "None (rows are read, never run)")


def _type_ok(hint: Any, value: Any) -> bool:
    """Whether ``value`` fits a row column's type (a bool is no number here: ``True`` is not a width)."""
    if typing.get_args(hint):
        return any(_type_ok(h, value) for h in typing.get_args(hint))
    if hint in (int, float):
        return isinstance(value, hint if hint is int else int | float) and not isinstance(value, bool)
    return value is None if hint is type(None) else isinstance(value, hint)


def parse_row(text: Any, where: str = "row") -> Row:
    """One row from its call text, by ``ast`` only: a row type of :mod:`.rows` with constant arguments."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text!r} invalid; expected a row as text, e.g. 'Bneck(56, 3, 72, 24, False, \"RE\", 2)'")
    where = f"{where} {text.strip()!r}"
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:  # ValueError: a NUL byte
        reason = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise ValueError(f"{where}: not a row call ({reason}); expected e.g. 'Bottleneck(6, 24, 2, 2)'") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"{where}: not a row call; expected a row type of mobilenets.models.rows called with "
                         f"constants ({', '.join(ROW_TYPES)})")
    cls = ROW_TYPES.get(node.func.id)
    if cls is None:
        raise ValueError(f"{where}: unknown row type {node.func.id!r}; expected one of {', '.join(ROW_TYPES)}"
                         f"{did_you_mean(node.func.id, ROW_TYPES)}")
    fields = cls._fields  # type: ignore[attr-defined]
    signature = f"{cls.__name__}({', '.join(fields)})"
    args = [_constant(a, where) for a in node.args]
    if len(args) > len(fields):
        raise ValueError(f"{where}: {len(args)} values; expected at most {len(fields)}: {signature}")
    values = dict(zip(fields, args, strict=False))
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in fields:
            hint = did_you_mean(kw.arg, fields) if kw.arg else ""
            raise ValueError(f"{where}: unknown column {kw.arg or '**'!r}; expected {signature}{hint}")
        if kw.arg in values:
            raise ValueError(f"{where}: column {kw.arg!r} given twice; expected {signature}")
        values[kw.arg] = _constant(kw.value, where)
    missing = [f for f in fields if f not in values and f not in cls._field_defaults]  # type: ignore[attr-defined]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}; expected {signature}")
    row = cls(**values)
    for name, hint in typing.get_type_hints(cls).items():
        if not _type_ok(hint, getattr(row, name)):
            shown = " or ".join(_KINDS.get(h, str(h)) for h in typing.get_args(hint) or (hint,))
            raise ValueError(f"{where}: {name}={getattr(row, name)!r} invalid; expected {shown} ({signature})")
    return row


# ------------------------------------------------------------------------------------------- checking
def _check_option(key: str, value: Any, allowed: tuple[Any, ...], prefix: str = "") -> None:
    if allowed is _BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"{prefix}{key}={value!r} invalid; expected True or False")
    elif allowed is _POSITIVE_INT:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{prefix}{key}={value!r} invalid; expected an integer >= 1")
    elif allowed is _POSITIVE_OR_NONE:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value > 0):
            raise ValueError(f"{prefix}{key}={value!r} invalid; expected a number > 0 or None")
    else:
        check_choice(f"{prefix}{key}", value, allowed)


def _check_row(row: Row, where: str) -> None:
    """Values the resolver and builder need: widths and repeats >= 1, odd kernels (a UIB's may be 0: absent),
    strides 1 or 2, RE / HS."""
    optional = ("a", "k") if isinstance(row, UIB) else ()
    for name in row._fields:
        value = getattr(row, name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 1 and not (
                name in optional and value == 0):
            raise ValueError(f"{where}: {name}={value!r} invalid; expected >= 1" + (" or 0 (absent)" if name in optional
                                                                                    else ""))
    for name in ("a", "k"):
        k = getattr(row, name, 1)
        if k % 2 == 0 and not (name in optional and k == 0):
            raise ValueError(f"{where}: {name}={k!r} invalid; expected an odd kernel size"
                             + (" or 0 (absent)" if name in optional else ""))
    if getattr(row, "s", 1) not in (1, 2):
        raise ValueError(f"{where}: s={row.s!r} invalid; expected stride 1 or 2")  # type: ignore[union-attr]
    nl = getattr(row, "nl", None)
    if nl is not None and nl not in ("RE", "HS"):
        raise ValueError(f"{where}: nl={nl!r} invalid; expected 'RE' (ReLU) or 'HS' (h-swish)")


def _check_table(family: str, table: Table, options: Mapping[str, Any], source: str) -> None:
    """Refuse in one line what the family's resolver cannot read, naming the row (``stages[i][j]``)."""
    if family not in FAMILIES:
        raise ValueError(f"{source}: family={family!r} invalid; expected one of {', '.join(FAMILIES)}"
                         f"{did_you_mean(family, FAMILIES)}")
    fam = FAMILIES[family]
    for key, value in options.items():
        if key not in fam.options:
            raise ValueError(f"{source}: option {key!r} unknown for {family}; expected some of "
                             f"{', '.join(fam.options)}{did_you_mean(key, fam.options)}")
        _check_option(key, value, fam.options[key], f"{source}: options.")
    if not isinstance(table.stem, Conv):
        raise ValueError(f"{source}: stem {table.stem!r} invalid; expected a Conv(k, out, s) row")
    _check_row(table.stem, f"{source}: stem")
    if not table.stages or not all(table.stages):
        raise ValueError(f"{source}: stages invalid; expected a non-empty list of non-empty lists of rows")
    last = (len(table.stages) - 1, len(table.stages[-1]) - 1)
    resolution, downs = 224 // table.stem.s, int(table.stem.s == 2)
    for i, stage in enumerate(table.stages):
        for j, row in enumerate(stage):
            if type(row) not in fam.rows:
                raise ValueError(f"{source}: stages[{i}][{j}]: {type(row).__name__} rows are not read by {family}; "
                                 f"expected {' / '.join(r.__name__ for r in fam.rows)}")
            where = f"{source}: stages[{i}][{j}] {row_text(row)!r}"
            _check_row(row, where)
            if isinstance(row, LastConv) and (i, j) != last:
                raise ValueError(f"{where}: LastConv must be the last row (the conv before pooling)")
            if isinstance(row, Bneck):
                if row.input != resolution:
                    raise ValueError(f"{where}: input={row.input} but the strides before it give {resolution}; "
                                     f"expected {resolution}")
                resolution //= row.s
            downs += int(getattr(row, "s", 1) == 2)
    if downs != 5:
        raise ValueError(f"{source}: {downs} stride-2 steps (stem included); expected 5, one per feature level C1..C5")
    if fam.head and (isinstance(table.head, bool) or not isinstance(table.head, int) or table.head < 1):
        raise ValueError(f"{source}: head={table.head!r} invalid; expected the hidden head width (an integer >= 1)")
    if not fam.head and table.head is not None:
        raise ValueError(f"{source}: head={table.head!r} invalid; expected null ({family} has no hidden head layer)")


# ------------------------------------------------------------------------------------- dict and text
def table_to_dict(tf: TableFile) -> dict[str, Any]:
    """The JSON-able form (rows as call text): what a file holds and what a model's ``model_kwargs`` record."""
    return {"format": FORMAT, "version": VERSION, "family": tf.family, "name": tf.name, "note": tf.note,
            "options": dict(tf.options), "stem": row_text(tf.table.stem),
            "stages": [[row_text(r) for r in stage] for stage in tf.table.stages], "head": tf.table.head}


def table_from_dict(data: Any, source: str = "table") -> TableFile:
    """A :class:`TableFile` from its dict form, checked; errors name ``source`` and the bad key or row."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: {type(data).__name__} invalid; expected a mapping with format: {FORMAT}")
    for key in data:
        if key not in _KEYS:
            raise ValueError(f"{source}: unknown key {key!r}; expected {', '.join(_KEYS)}{did_you_mean(key, _KEYS)}")
    if data.get("format") != FORMAT:
        raise ValueError(f"{source}: format={data.get('format')!r} invalid; expected {FORMAT!r} (a mobilenets table)")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise ValueError(f"{source}: version={version!r} unsupported; expected {VERSION}")
    family = data.get("family")
    if family not in FAMILIES:
        raise ValueError(f"{source}: family={family!r} invalid; expected one of {', '.join(FAMILIES)}"
                         f"{did_you_mean(family, FAMILIES)}")
    for key in ("name", "note"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"{source}: {key}={data[key]!r} invalid; expected text or null")
    options = data.get("options") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{source}: options={options!r} invalid; expected a mapping of {family} keywords")
    stages = data.get("stages")
    if not isinstance(stages, list | tuple) or not stages or not all(isinstance(s, list | tuple) and s for s in stages):
        raise ValueError(f"{source}: stages={stages!r} invalid; expected a non-empty list of non-empty lists of rows")
    table = Table(parse_row(data.get("stem"), f"{source}: stem"),
                  tuple(tuple(parse_row(text, f"{source}: stages[{i}][{j}]") for j, text in enumerate(stage))
                        for i, stage in enumerate(stages)),
                  data.get("head"))
    _check_table(family, table, options, source)
    return TableFile(family, table, dict(options), data.get("name"), data.get("note"))


def dump_table_file(tf: TableFile) -> str:
    """The YAML text of ``tf``: a short header saying what it is, then its dict form."""
    header = (f"# mobilenets architecture table ({FORMAT}, version {VERSION}): a {tf.family} network.\n"
              f"# Rows are mobilenets.models.rows calls in the paper's column order: {FAMILIES[tf.family].columns}.\n"
              "# They are parsed, never run. Use the file where a model name goes: create_model(\"THIS.yaml\"),\n"
              "# mobilenets train model.name=THIS.yaml, mobilenets profile / bench THIS.yaml.\n")
    return header + yaml.safe_dump(table_to_dict(tf), sort_keys=False, allow_unicode=True, width=1000)


def parse_table_file(text: str, source: str = "<table>") -> TableFile:
    """A :class:`TableFile` from YAML (or JSON) text, by ``yaml.safe_load`` and ``ast`` only."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None
    return table_from_dict(data, source)


def write_table_file(tf: TableFile, path: str | os.PathLike[str]) -> Path:
    """Write ``tf`` atomically: YAML, or JSON when ``path`` ends in ``.json``."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"table file {path} invalid; expected a name ending in {', '.join(SUFFIXES)}")
    text = json.dumps(table_to_dict(tf), indent=2) + "\n" if path.suffix.lower() == ".json" else dump_table_file(tf)
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_table_file(path: str | os.PathLike[str]) -> TableFile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a table file ({', '.join(SUFFIXES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; expected a table file (YAML or JSON)") from None
    return parse_table_file(text, str(path))


def is_table_path(name: object) -> bool:
    """Whether ``name`` names an existing table file (by its suffix), i.e. stands where a model name goes."""
    return isinstance(name, str | os.PathLike) and Path(name).suffix.lower() in SUFFIXES and Path(name).is_file()


# ------------------------------------------------------------------------------------------ resolving
def load_table(table: Any) -> TableFile:
    """``mobilenet_table``'s ``table=``: a file path, its dict form, a :class:`TableFile`, or ``None`` for
    MobileNetV3-Small's own table (Table 2 of the paper, where an adaptation usually starts)."""
    if table is None:
        return TableFile("mobilenet_v3_small", MOBILENET_V3_SMALL, {}, "mobilenet_v3_small (V3 paper, Table 2)")
    if isinstance(table, TableFile):
        return table
    if isinstance(table, str | os.PathLike):
        if not is_table_path(table):
            raise ValueError(f"table={str(table)!r} not found; expected a table file ({', '.join(SUFFIXES)}) or its dict")
        return read_table_file(table)
    if isinstance(table, Mapping):
        return table_from_dict(table, "table")
    raise ValueError(f"table={table!r} invalid; expected a table file path, its dict (table_to_dict) or None")


def resolve_table_file(tf: TableFile, width_mult: float = 1.0, **overrides: Any) -> ArchSpec:
    """Resolve ``tf``'s rows with its family's resolver: the file's options, then ``overrides`` (``None``
    keeps the file's), and ``width_mult`` scaling the table as it scales a built-in one."""
    fam = FAMILIES[tf.family]
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        if key not in fam.options:
            raise ValueError(f"{key}={value!r} does not apply to a {tf.family} table; expected some of "
                             f"{', '.join(fam.options)}")
        _check_option(key, value, fam.options[key])
    options = {**tf.options, **given}
    if tf.family == "mobilenet_v1":
        return resolve_mobilenet_v1(width_mult, table=tf.table, **options)
    if tf.family == "mobilenet_v2":
        return resolve_mobilenet_v2(width_mult, table=tf.table, **options)
    if tf.family == "mobilenet_v5":
        variant = options.pop("variant", "base")
        return resolve_mobilenet_v5(variant, width_mult, table=tf.table, **options)
    variant = tf.family.removeprefix("mobilenet_v3_")
    return resolve_mobilenet_v3(variant, width_mult, table=tf.table, **options)  # type: ignore[arg-type]
