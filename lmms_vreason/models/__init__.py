"""Model families: what each ``transformers`` vision-language model needs from the decode loop.

:mod:`.families` describes every supported family (backend id, default checkpoint, adapter) with
no torch import; :func:`adapter_for` picks a loaded model's adapter from its ``config.model_type``.
Adding a family is one description in :mod:`.families` and, where its positions differ, one small
adapter module here (the decode loop and the lmms-eval backend stay the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmms_vreason.models.families import (
    DEFAULT_FAMILY,
    FAMILIES,
    ModelFamily,
    family_named,
    family_of_backend,
)

if TYPE_CHECKING:
    import torch

    from lmms_vreason.core.adapter import ModelAdapter

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "ModelFamily", "adapter_for", "family_named", "family_of_backend"]


def adapter_for(model: torch.nn.Module) -> ModelAdapter:
    """The adapter of ``model``'s family; unknown families fail naming the supported ones."""
    family = family_named(getattr(model.config, "model_type", None))
    return family.adapter_class()(model)
