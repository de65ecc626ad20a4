"""V-Reason (Video Reasoning without Training) for Qwen2.5-VL, Qwen3-VL and Qwen2-VL, as an lmms-eval plugin.

The method (:mod:`lmms_vreason.core`) is plain torch and knows nothing of lmms-eval or a model
family; :mod:`lmms_vreason.models` adapts model families and :mod:`lmms_vreason.lmms` is the thin
lmms-eval adapter (``docs/method.md`` holds the decisions the code relies on). Importing this
package has no side effects.
"""

__version__ = "0.1.0"
