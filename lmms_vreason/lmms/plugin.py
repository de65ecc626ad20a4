"""lmms-eval entry point (group ``lmms_eval.models``): registers the backend and the task pack.

lmms-eval calls :func:`manifests` when it builds its model registry (on importing
``lmms_eval.models``, before any task is resolved). That is the plugin's one registration moment,
so it also makes lmms-eval's ``TaskManager`` index our task directory, so that
``lmms-eval --model qwen2_5_vl_vreason --tasks mmvu`` works with no ``--include_path``.
"""

from __future__ import annotations

MODEL_ID = "qwen2_5_vl_vreason"
CHAT_CLASS_PATH = "lmms_vreason.lmms.backend.Qwen2_5_VL_VReason"


def manifests():
    """The backend's ``ModelManifest`` (and, idempotently, the task directory's registration)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from lmms_vreason.lmms.task_registry import register_task_dir

    register_task_dir()
    return [ModelManifest(model_id=MODEL_ID, chat_class_path=CHAT_CLASS_PATH)]
