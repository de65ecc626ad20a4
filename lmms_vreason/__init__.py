"""V-Reason (Video Reasoning without Training) for Qwen2.5-VL, Qwen3-VL and Qwen2-VL, as an lmms-eval plugin.

The method's pieces (:mod:`controller`, :mod:`objective`, :mod:`decode`) are plain torch and know
nothing of lmms-eval; :mod:`backend` is the thin lmms-eval adapter. Importing this package has no
side effects.
"""

__version__ = "0.1.0"
