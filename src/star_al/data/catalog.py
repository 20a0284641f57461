"""Which task a name means: a built-in task file, a user's task YAML, or an lm-evaluation-harness task.

What a task is, how its records become examples and where its data is found is
data/tasks.py; lm-eval tasks are data/lm_eval_tasks.py. This module chooses between the
two, so neither needs the other.
"""

from __future__ import annotations

from pathlib import Path

from star_al.data.lm_eval_tasks import is_lm_eval_yaml, load_lm_eval_task
from star_al.data.tasks import Task, parse_task_file
from star_al.errors import StarError

BUILTIN_DIR = Path(__file__).parent / "builtin_tasks"


def builtin_task_names() -> list[str]:
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def load_task(name_or_path: str) -> Task:
    """A built-in task by name, a user's task YAML by path, or an lm-evaluation-harness task
    (`lm-eval:NAME`, or the path of an lm-eval task YAML: one with a `task:` key)."""
    if name_or_path in builtin_task_names():
        return parse_task_file(BUILTIN_DIR / f"{name_or_path}.yaml", builtin=True)
    if str(name_or_path).startswith("lm-eval:"):
        return load_lm_eval_task(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        if is_lm_eval_yaml(path):
            return load_lm_eval_task(str(path))
        return parse_task_file(path, builtin=False)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        raise StarError(f"task file {path} not found")
    raise StarError(
        f"unknown task '{name_or_path}': built-ins are {', '.join(builtin_task_names())}, "
        "or give the path of a task YAML file"
    )
