"""The V-Reason task pack for lmms-eval, installed as ``lmms_vreason.tasks`` (the YAMLs are package data).

lmms-eval reads the YAMLs in this folder, not this package:
:func:`lmms_vreason.lmms.task_registry.register_task_dir` adds the folder to every ``TaskManager``'s index
(or pass ``--include_path`` with this folder). The task functions are in :mod:`lmms_vreason.tasks.utils`.
"""
