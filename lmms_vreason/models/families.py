"""The supported model families: what differs between Qwen2-VL, Qwen2.5-VL, Qwen3-VL (dense and MoE)
and Qwen3.5 (dense and MoE), in one place.

A :class:`ModelFamily` is a plain description (no torch import, so argument validation and experiment
configs can use it without loading anything): the lmms-eval model id of its V-Reason backend, the
built-in lmms-eval backend closest to it, its default checkpoint and its decode-loop adapter. The
decode loop, the V-Reason stepper, the lmms-eval backend and the video reader are the same for every
family; only these values and the adapter's positions differ. The media knobs come from the loaded
checkpoint's own processor (frame sides are multiples of its patch x merge: 28 px, 32 on Qwen3-VL),
so they are not repeated here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmms_vreason.core.adapter import ModelAdapter


@dataclass(frozen=True, kw_only=True)
class ModelFamily:
    """One ``transformers`` vision-language model family that V-Reason runs on."""

    name: str
    """``config.model_type`` of the family's checkpoints (also the tiny builder's ``--family``)."""
    label: str
    """Human name, for messages and docs."""
    backend: str
    """lmms-eval model id of the V-Reason backend (``--model``)."""
    builtin_backend: str
    """lmms-eval's own backend for the family (with V-Reason off, ours answers as it does given the
    same frames and prompt; the end-to-end tests compare them)."""
    default_pretrained: str
    """Checkpoint loaded when ``pretrained`` is not given."""
    adapter: str
    """Import path (``module:Class``) of the family's :class:`~lmms_vreason.core.adapter.ModelAdapter`."""
    native_thinking: bool = False
    """Its chat template has a thinking mode (``enable_thinking``; Qwen3.5): the backend's
    ``enable_thinking`` argument chooses it, off by default."""

    def adapter_class(self) -> type[ModelAdapter]:
        """The adapter class (imported on first use: it needs torch)."""
        module, _, name = self.adapter.partition(":")
        return getattr(importlib.import_module(module), name)


QWEN2_5_VL = ModelFamily(
    name="qwen2_5_vl",
    label="Qwen2.5-VL",
    backend="qwen2_5_vl_vreason",
    builtin_backend="qwen2_5_vl",
    default_pretrained="Qwen/Qwen2.5-VL-7B-Instruct",
    adapter="lmms_vreason.models.qwen2_5_vl:Qwen2_5_VLAdapter",
)
QWEN3_VL = ModelFamily(
    name="qwen3_vl",
    label="Qwen3-VL",
    backend="qwen3_vl_vreason",
    builtin_backend="qwen3_vl",
    default_pretrained="Qwen/Qwen3-VL-8B-Instruct",
    adapter="lmms_vreason.models.qwen3_vl:Qwen3VLAdapter",
)
QWEN2_VL = ModelFamily(
    name="qwen2_vl",
    label="Qwen2-VL",
    backend="qwen2_vl_vreason",
    builtin_backend="qwen2_vl",
    default_pretrained="Qwen/Qwen2-VL-7B-Instruct",
    adapter="lmms_vreason.models.qwen2_vl:Qwen2VLAdapter",
)

QWEN3_VL_MOE = ModelFamily(
    name="qwen3_vl_moe",
    label="Qwen3-VL-MoE",
    backend="qwen3_vl_moe_vreason",
    builtin_backend="qwen3_vl",  # lmms-eval's qwen3_vl loads the MoE class when is_moe=true
    default_pretrained="Qwen/Qwen3-VL-30B-A3B-Instruct",
    adapter="lmms_vreason.models.qwen3_vl_moe:Qwen3VLMoeAdapter",
)
QWEN3_5 = ModelFamily(
    name="qwen3_5",
    label="Qwen3.5",
    backend="qwen3_5_vreason",
    builtin_backend="qwen3_5",
    default_pretrained="Qwen/Qwen3.5-9B",
    adapter="lmms_vreason.models.qwen3_5:Qwen3_5Adapter",
    native_thinking=True,
)
QWEN3_5_MOE = ModelFamily(
    name="qwen3_5_moe",
    label="Qwen3.5-MoE",
    backend="qwen3_5_moe_vreason",
    builtin_backend="qwen3_5",  # with is_moe=true
    default_pretrained="Qwen/Qwen3.5-35B-A3B",
    adapter="lmms_vreason.models.qwen3_5_moe:Qwen3_5MoeAdapter",
    native_thinking=True,
)

FAMILIES: Mapping[str, ModelFamily] = MappingProxyType(
    {f.name: f for f in (QWEN2_5_VL, QWEN3_VL, QWEN2_VL, QWEN3_VL_MOE, QWEN3_5, QWEN3_5_MOE)}
)
"""Every supported family by ``config.model_type``; the first is the project's default."""
DEFAULT_FAMILY = QWEN2_5_VL


def family_named(name: str) -> ModelFamily:
    """The family of ``config.model_type == name``; unknown names fail naming the supported ones."""
    if name not in FAMILIES:
        raise ValueError(f"no V-Reason support for model_type {name!r}; supported: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_backend(backend: str) -> ModelFamily:
    """The family behind the lmms-eval model id ``backend`` (``qwen3_vl_vreason`` -> Qwen3-VL)."""
    for family in FAMILIES.values():
        if family.backend == backend:
            return family
    valid = ", ".join(f.backend for f in FAMILIES.values())
    raise ValueError(f"unknown V-Reason backend {backend!r}; valid: {valid}")
