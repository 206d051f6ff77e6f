"""Models: layers, blocks, the one builder, the architecture tables and the registry (no weights: see
:mod:`mobilenets.weights`, which builds on this package)."""

from . import detection, segmentation  # registers the detectors and segmenters
from .archs import (
    mobilenet_table,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3_large,
    mobilenet_v3_small,
    mobilenet_v4_conv_large,
    mobilenet_v4_conv_medium,
    mobilenet_v4_conv_small,
    mobilenet_v4_hybrid_large,
    mobilenet_v4_hybrid_medium,
    mobilenet_v5_300m,
    mobilenet_v5_300m_enc,
    mobilenet_v5_base,
    resnet18,
    resnet50,
)
from .blocks import BLOCK_TYPES, BlockSpec, BlockType
from .layers import make_divisible
from .mobilenet import ArchSpec, MobileNet
from .registry import build_model, get_model_kwargs, list_models, model_task, register_model
from .table_file import TableFile, read_table_file, write_table_file

__all__ = [
    "BLOCK_TYPES",
    "ArchSpec",
    "BlockSpec",
    "BlockType",
    "MobileNet",
    "TableFile",
    "build_model",
    "detection",
    "get_model_kwargs",
    "list_models",
    "make_divisible",
    "mobilenet_table",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "mobilenet_v4_conv_large",
    "mobilenet_v4_conv_medium",
    "mobilenet_v4_conv_small",
    "mobilenet_v4_hybrid_large",
    "mobilenet_v4_hybrid_medium",
    "mobilenet_v5_300m",
    "mobilenet_v5_300m_enc",
    "mobilenet_v5_base",
    "model_task",
    "read_table_file",
    "register_model",
    "resnet18",
    "resnet50",
    "segmentation",
    "write_table_file",
]
