"""lmms-eval entry point (group ``lmms_eval.models``): registers the backends and the task pack.

lmms-eval calls :func:`manifests` when it builds its model registry (on importing
``lmms_eval.models``, before any task is resolved) and registers every manifest it returns: one
per model family (``qwen2_5_vl_vreason``, ``qwen3_vl_vreason``, ``qwen2_vl_vreason``,
``qwen3_vl_moe_vreason``, ``qwen3_5_vreason``, ``qwen3_5_moe_vreason``) from one entry point.
That is the plugin's one registration moment, so it also makes lmms-eval's ``TaskManager``
index our task directory, so that ``lmms-eval --model qwen3_vl_vreason --tasks mmvu`` works with no
``--include_path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

CHAT_CLASS_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "qwen2_5_vl_vreason": "lmms_vreason.lmms.backend.Qwen2_5_VL_VReason",
        "qwen3_vl_vreason": "lmms_vreason.lmms.backend.Qwen3_VL_VReason",
        "qwen2_vl_vreason": "lmms_vreason.lmms.backend.Qwen2_VL_VReason",
        "qwen3_vl_moe_vreason": "lmms_vreason.lmms.backend.Qwen3_VL_Moe_VReason",
        "qwen3_5_vreason": "lmms_vreason.lmms.backend.Qwen3_5_VReason",
        "qwen3_5_moe_vreason": "lmms_vreason.lmms.backend.Qwen3_5_Moe_VReason",
    }
)
"""The backend class of each lmms-eval model id (one per model family; a test checks they agree)."""


def manifests():
    """The backends' ``ModelManifest``s (and, idempotently, the task directory's registration)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from lmms_vreason.lmms.task_registry import register_task_dir

    register_task_dir()
    return [ModelManifest(model_id=model, chat_class_path=path) for model, path in CHAT_CLASS_PATHS.items()]
