"""``register_task_dir``: lmms-eval's ``TaskManager`` finds our tasks with no ``--include_path``."""

from __future__ import annotations

from pathlib import Path

import lmms_eval.tasks
import pytest
from lmms_eval.tasks import TaskManager

from lmms_vreason.benchmarks import GROUP_TASK, OPT_IN_TASKS, TABLE1_COLUMNS, VSI_GROUP_TASK
from lmms_vreason.lmms.task_registry import register_task_dir, task_dir, with_task_dir

OUR_NAMES = sorted(
    {column.task for column in TABLE1_COLUMNS} | {GROUP_TASK, VSI_GROUP_TASK} | set(OPT_IN_TASKS)
)
LMMS_EVAL_TASKS = Path(lmms_eval.tasks.__file__).parent


@pytest.fixture
def restore_task_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo any patch of ``TaskManager.initialize_tasks`` after the test (the plugin may have patched
    it already when lmms-eval loaded its entry points; the original is whatever is there now)."""
    monkeypatch.setattr(TaskManager, "initialize_tasks", TaskManager.initialize_tasks)


def test_task_dir_is_the_package_holding_our_yamls() -> None:
    directory = task_dir()
    assert (directory / "vreason_bench.yaml").is_file()
    assert (directory / "utils.py").is_file()


@pytest.mark.parametrize(
    ("include_path", "expected"),
    [
        (None, ["OURS"]),
        ("/other", ["/other", "OURS"]),
        (["/a", "/b"], ["/a", "/b", "OURS"]),
        (["OURS/"], ["OURS/"]),  # already named (trailing slash and all): not added twice
    ],
)
def test_with_task_dir_appends_our_folder_once(include_path, expected: list[str]) -> None:
    ours = str(task_dir())

    def sub(value):
        if isinstance(value, list):
            return [v.replace("OURS", ours) for v in value]
        return value.replace("OURS", ours) if isinstance(value, str) else value

    assert with_task_dir(sub(include_path), task_dir()) == sub(expected)


def test_registration_is_idempotent_and_keeps_lmms_eval_first(
    restore_task_manager: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[object, bool]] = []

    def recorder(self, include_path=None, include_defaults=True):
        calls.append((include_path, include_defaults))
        return {}

    monkeypatch.setattr(TaskManager, "initialize_tasks", recorder)
    register_task_dir()
    patched = TaskManager.initialize_tasks
    register_task_dir()
    assert TaskManager.initialize_tasks is patched  # the second call changed nothing

    patched(object(), include_path=None)
    patched(object(), include_path="/mine", include_defaults=False)
    patched(object(), include_path=[str(task_dir())])
    assert calls == [
        ([str(task_dir())], True),  # lmms-eval puts its own folder first, then these in order
        (["/mine", str(task_dir())], False),
        ([str(task_dir())], True),  # --include_path <repo>/tasks: indexed once
    ]


@pytest.fixture(scope="module")
def registered_manager() -> TaskManager:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TaskManager, "initialize_tasks", TaskManager.initialize_tasks)
        register_task_dir()
        register_task_dir()
        return TaskManager()  # no include_path, lmms-eval's own tasks included


def test_task_manager_resolves_our_tasks_without_include_path(registered_manager: TaskManager) -> None:
    index = registered_manager.task_index
    for name in OUR_NAMES:
        # Every name resolves to our file: a built-in of the same name would have won the collision.
        assert Path(index[name]["yaml_path"]).parent == task_dir(), name
    assert index["mmvu"]["type"] == "python_task"  # utils.VReasonTask, not lmms-eval's MMVU
    assert index[GROUP_TASK]["type"] == "group" and index[VSI_GROUP_TASK]["type"] == "group"
    assert registered_manager.match_tasks(["mmvu", GROUP_TASK]) == sorted(["mmvu", GROUP_TASK])


def test_lmms_eval_tasks_are_still_there(registered_manager: TaskManager) -> None:
    index = registered_manager.task_index
    builtins = [
        name for name, entry in index.items() if str(entry["yaml_path"]).startswith(str(LMMS_EVAL_TASKS))
    ]
    assert len(builtins) > 100
    assert Path(index["mmvu_val"]["yaml_path"]).is_relative_to(LMMS_EVAL_TASKS)


def test_include_path_alone_works_too(restore_task_manager: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--include_path <repo>/tasks`` without the plugin's registration (the original method)."""
    original = getattr(TaskManager.initialize_tasks, "__wrapped__", TaskManager.initialize_tasks)
    monkeypatch.setattr(TaskManager, "initialize_tasks", original)
    manager = TaskManager(include_path=str(task_dir()), include_defaults=False)
    assert sorted(manager.all_tasks) == OUR_NAMES
