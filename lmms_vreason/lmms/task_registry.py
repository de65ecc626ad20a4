"""Make lmms-eval's ``TaskManager`` index the V-Reason task pack without ``--include_path``.

lmms-eval indexes only its own ``lmms_eval/tasks/`` folder plus the ``include_path`` it is given,
and it has no plugin hook for task folders (entry points cover models only). The plugin's
entry-point callable (:func:`lmms_vreason.lmms.plugin.manifests`) runs when ``lmms_eval.models`` is
imported, which the CLI does before it builds its ``TaskManager``; it calls :func:`register_task_dir`,
which wraps ``TaskManager.initialize_tasks`` so that every ``TaskManager`` (the CLI's, the power
analysis', a user's) also indexes our folder.

Our folder is searched *after* lmms-eval's own folder and any ``--include_path``: lmms-eval keeps the
first definition of a name, so a built-in task can never be shadowed by ours (our names are chosen
not to collide; ``tests/test_task_registry.py`` checks that every one of them resolves to our file).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

_MARKER = "__vreason_task_dir__"


def task_dir() -> Path:
    """The folder of the task YAMLs: the ``lmms_vreason.tasks`` package (the repo's ``tasks/``)."""
    return Path(str(files("lmms_vreason.tasks")))


def _same_dir(path: str | Path, directory: Path) -> bool:
    return Path(path).expanduser().resolve() == directory.resolve()


def with_task_dir(include_path: str | Sequence[str] | None, directory: Path) -> list[str]:
    """``include_path`` as a list that ends with ``directory``, unless it already names it."""
    paths = [include_path] if isinstance(include_path, str) else list(include_path or [])
    if not any(_same_dir(path, directory) for path in paths):
        paths.append(str(directory))
    return paths


def register_task_dir() -> Path:
    """Make every lmms-eval ``TaskManager`` index our task folder; idempotent. Returns the folder.

    A second call finds its own wrapper in place and changes nothing; an explicit
    ``--include_path`` pointing at the same folder is not indexed twice either.
    """
    from lmms_eval.tasks import TaskManager

    directory = task_dir()
    original: Callable[..., dict[str, Any]] = TaskManager.initialize_tasks
    if getattr(original, _MARKER, None) is not None:
        return directory

    @functools.wraps(original)
    def initialize_tasks(
        self: Any, include_path: Any = None, include_defaults: bool = True
    ) -> dict[str, Any]:
        return original(
            self, include_path=with_task_dir(include_path, directory), include_defaults=include_defaults
        )

    setattr(initialize_tasks, _MARKER, directory)
    TaskManager.initialize_tasks = initialize_tasks
    return directory
