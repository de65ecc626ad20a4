"""Model-family adapters: how each ``transformers`` vision-language model starts its positions.

:func:`adapter_for` picks the adapter from the model's ``config.model_type``; adding a family is
one small module here (the decode loop and the lmms-eval backend stay the same).
"""

from __future__ import annotations

import torch

from lmms_vreason.core.adapter import ModelAdapter
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter

ADAPTERS: dict[str, type[ModelAdapter]] = {"qwen2_5_vl": Qwen2_5_VLAdapter}
"""Adapter class by ``config.model_type``."""


def adapter_for(model: torch.nn.Module) -> ModelAdapter:
    """The adapter of ``model``'s family; unknown families fail naming the supported ones."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ADAPTERS:
        raise ValueError(
            f"no V-Reason adapter for model_type {model_type!r}; supported: {', '.join(ADAPTERS)}"
        )
    return ADAPTERS[model_type](model)
