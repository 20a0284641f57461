"""Label Studio as the labelers' tool: each batch pushed into a project, annotations pulled back.

Optional (`pip install star-al[label-studio]`): the project is created on first use with
the labeling interface of `people.label_studio_config`, its id kept in the run directory
(`label_studio.json`); the token comes from $LABEL_STUDIO_API_KEY (a legacy token or a
personal access token). Pulled annotations go through the same checks as a file.
"""

from __future__ import annotations

import json
import os

from pathlib import Path

from star_al.errors import StarError
from star_al.files import write_json_atomic
from star_al.labeling.batch_files import label_studio_answers, label_studio_config, label_studio_tasks
from star_al.labeling.tool import AnswerRow, LabellingTool

STATE_FILE = "label_studio.json"


class LabelStudioProject(LabellingTool):
    """A Label Studio project of the run's own: batches imported as tasks, annotations pulled back."""

    name = "label-studio"

    def __init__(self, run_path: Path, url: str, project_id: int | None = None):
        self.run_path, self.url, self.project_id = Path(run_path), url.rstrip("/"), project_id

    @classmethod
    def for_run(cls, run_path: Path, url: str | None) -> "LabelStudioProject | None":
        """The run's project: from --label-studio on its first command, from its directory after."""
        state = Path(run_path) / STATE_FILE
        if state.is_file():
            saved = json.loads(state.read_text())
            if url and url.rstrip("/") != saved["url"]:
                raise StarError(f"{run_path} labels in Label Studio at {saved['url']}, not {url}")
            return cls(run_path, saved["url"], saved.get("project_id"))
        return cls(run_path, url) if url else None

    def _client(self):
        try:
            from label_studio_sdk import LabelStudio
        except ImportError as error:
            raise StarError("Label Studio needs its SDK: pip install 'star-al[label-studio]'") from error
        token = os.environ.get("LABEL_STUDIO_API_KEY")
        if not token:
            raise StarError("set LABEL_STUDIO_API_KEY to a Label Studio access token")
        return LabelStudio(base_url=self.url, api_key=token)

    def push(self, task, batch) -> None:
        """Import the batch as tasks (the model's answers as predictions); create the project first."""
        client = self._client()
        try:
            if self.project_id is None:
                project = client.projects.create(title=f"star-al {self.run_path.name} ({task.name})",
                                                 label_config=label_studio_config(task))
                self.project_id = project.id
                write_json_atomic(self.run_path / STATE_FILE, {"url": self.url, "project_id": self.project_id})
            client.projects.import_tasks(id=self.project_id, request=label_studio_tasks(task, batch))
        except StarError:
            raise
        except Exception as error:  # the SDK raises its own HTTP and connection errors
            raise StarError(f"Label Studio at {self.url}: {type(error).__name__}: "
                            f"{str(error).splitlines()[0][:200]}") from error

    def pull(self) -> list[AnswerRow]:
        """(where, id, answer) for each task's latest submitted, non-cancelled annotation."""
        client = self._client()
        try:
            tasks = [_as_dict(item) for item in client.tasks.list(project=self.project_id, fields="all")]
        except Exception as error:
            raise StarError(f"Label Studio at {self.url}: {type(error).__name__}: "
                            f"{str(error).splitlines()[0][:200]}") from error
        return label_studio_answers(tasks, f"Label Studio project {self.project_id}")


def _as_dict(item) -> dict:
    if isinstance(item, dict):
        return item
    dumped = item.model_dump() if hasattr(item, "model_dump") else item.dict()
    return json.loads(json.dumps(dumped, default=str))
