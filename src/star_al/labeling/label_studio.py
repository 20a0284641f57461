"""Label Studio as the labelers' tool: each batch pushed into a project, annotations pulled back.

Optional (`pip install star-al[label-studio]`): the token comes from $LABEL_STUDIO_API_KEY
(a legacy token or a personal access token), checked with the SDK and the server's
/health before the run does any work. The run directory keeps, in `label_studio.json`,
the server's URL, the project (created with the labeling interface of
`label_studio_config` on the first batch) and each batch's delivery:

    {"url": "http://host:8080", "project_id": 3,
     "batches": {"0": {"delivered": true, "project_id": 3, "tasks": 32, "imported": 32},
                 "1": {"delivered": false}}}

A batch is noted (not delivered) before anything is sent, and marked delivered only
once Label Studio has all its tasks; a push cut short is sent again by the next `star
resume` or `star label --from label-studio`. A batch goes in one import request, and
before it the project's tasks carrying the batch's ids are looked up and left out, so a
push that failed after Label Studio took part of it never makes a task twice. Pulled
annotations (of the latest batch) go through the same checks as a file.
"""

from __future__ import annotations

import json
import os
import shlex
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

from star_al.errors import StarError
from star_al.files import read_json, write_json_atomic
from star_al.labeling.batch_files import BatchFiles, label_studio_answers, label_studio_config, label_studio_tasks
from star_al.labeling.tool import AnswerRow, LabellingTool

STATE_FILE = "label_studio.json"
TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"
CHECK_TIMEOUT_S = 10
TITLE_MAX = 50  # Label Studio refuses a longer project title
NO_RETRY = {"max_retries": 0}  # a retried import after a lost answer could make tasks twice; we look first instead


def _sdk_client_class():
    """The SDK's client class; the SDK is an optional extra."""
    try:
        from label_studio_sdk import LabelStudio
    except ImportError as error:
        raise StarError("Label Studio needs its SDK: pip install 'star-al[label-studio]'") from error
    return LabelStudio


class LabelStudioProject(LabellingTool):
    """A Label Studio project of the run's own: batches imported as tasks, annotations pulled back."""

    name = "label-studio"

    def __init__(self, run_path: Path, url: str, project_id: int | None = None, batches: dict | None = None,
                 project_key: str | None = None):
        self.run_path, self.url, self.project_id = Path(run_path), url.rstrip("/"), project_id
        self.project_key = project_key  # in the project's description: a create whose answer was lost is found by it
        self.batches: dict[str, dict] = dict(batches or {})
        where = "/".join(self.run_path.resolve().parts[-3:])  # e.g. star-al sst2/me/seed-0
        self.title = f"star-al {where}" if len(where) <= TITLE_MAX - 8 else f"star-al ...{where[11 - TITLE_MAX:]}"
        self.run = shlex.quote(str(self.run_path))

    @classmethod
    def for_run(cls, run_path: Path, url: str | None) -> "LabelStudioProject | None":
        """The run's project: from --label-studio on its first command, from its directory after."""
        state = Path(run_path) / STATE_FILE
        if state.is_file():
            saved = read_json(state, "restore it from a copy (it names the run's Label Studio URL and project)")
            if not (isinstance(saved, dict) and isinstance(saved.get("url"), str)
                    and isinstance(saved.get("project_id"), (int, type(None)))
                    and isinstance(saved.get("batches", {}), dict)
                    and isinstance(saved.get("project_key"), (str, type(None)))):
                raise StarError(f"{state}: not a Label Studio state (url, project_id, batches); restore it from a copy")
            if url and url.rstrip("/") != saved["url"]:
                raise StarError(f"{run_path} labels in Label Studio at {saved['url']}, not {url}")
            return cls(run_path, saved["url"], saved["project_id"], saved.get("batches"), saved.get("project_key"))
        if url and not url.startswith(("http://", "https://")):
            raise StarError(f"--label-studio {url}: give the server's address, e.g. http://localhost:8080")
        return cls(run_path, url) if url else None

    # -- before any work ------------------------------------------------------------------------
    def check(self) -> None:
        """The SDK, a token, a server that answers its /health, and that takes the token."""
        client = self._client()
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=CHECK_TIMEOUT_S) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise StarError(f"Label Studio at {self.url} is not ready: its /health answers HTTP {error.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            state = self.run_path / STATE_FILE
            other = (f"go on without it by moving {state} away" if state.is_file() else "check --label-studio")
            raise StarError(f"Label Studio at {self.url} does not answer ({reason}); start it, or {other}") from None
        with self._talking("the token check"):
            client.users.whoami(request_options={"timeout_in_seconds": CHECK_TIMEOUT_S, **NO_RETRY})

    # -- out ------------------------------------------------------------------------------------
    def expect(self, round_index: int) -> None:
        if str(round_index) not in self.batches:
            self.batches[str(round_index)] = {"delivered": False}
            self._save()

    def push(self, task, batch) -> None:
        """Import the batch as tasks (the model's answers as predictions), unless it is there already."""
        self._deliver(batch.round, lambda: label_studio_tasks(task, batch), lambda: label_studio_config(task))

    def resend(self, round_index: int) -> str | None:
        """Deliver the batch from its files (`round_k.labelstudio.json`) if its push did not complete."""
        files = BatchFiles(self.run_path)
        stem = files.stem(round_index)
        if self.is_delivered(round_index) or not files.is_out(round_index):
            return None
        tasks_file, config_file = Path(f"{stem}.labelstudio.json"), files.folder / "labelstudio_config.xml"
        for path in (tasks_file, config_file):
            if not path.is_file():
                raise StarError(f"{path} is missing: `star resume {self.run}` writes round {round_index}'s "
                                "batch again and sends it to Label Studio")
        tasks = read_json(tasks_file, f"delete it and `star resume {self.run}` writes it again")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict)
                                                   for t in tasks):
            raise StarError(f"{tasks_file}: not Label Studio tasks; delete it and `star resume {self.run}` "
                            "writes it again")
        imported = self._deliver(round_index, lambda: tasks, config_file.read_text)
        return (f"round {round_index}: its batch, not delivered before, is now in Label Studio project "
                f"{self.project_id} ({len(tasks)} tasks, {imported} imported now)")

    def is_delivered(self, round_index: int) -> bool:
        return bool(self.batches.get(str(round_index), {}).get("delivered"))

    def describe(self, round_index: int) -> str | None:
        entry = self.batches.get(str(round_index))
        if entry is None:
            return None
        if entry.get("delivered"):
            return f"delivered to Label Studio project {entry.get('project_id')} ({entry.get('tasks')} tasks)"
        return (f"not yet delivered to Label Studio at {self.url} (its push did not complete; `star resume "
                f"{self.run}` or `star label {self.run} --from label-studio` sends the batch waiting)")

    def _deliver(self, round_index: int, make_tasks, make_config) -> int:
        """Bring round `round_index`'s batch into the project (created first) once; how many tasks went in now."""
        if self.is_delivered(round_index):
            return 0
        self.expect(round_index)  # noted before anything is sent: a push cut short is retried
        tasks = make_tasks()
        client = self._client()
        with self._talking(f"round {round_index}'s batch"):
            if self.project_id is None:
                if self.project_key is not None:
                    self.project_id = self._find_project(client)  # made before, its answer lost
                if self.project_id is None:
                    self.project_key = self.project_key or uuid.uuid4().hex
                    self._save()  # noted before the project is asked for
                    project = client.projects.create(title=self.title, description=self._description(),
                                                     label_config=make_config(), request_options=NO_RETRY)
                    self.project_id = int(project.id)
                self._save()
            batch_ids = {task["data"].get("id") for task in tasks}
            there = {data.get("id") for data in self._task_data(client)
                     if data.get("star_round") == round_index and data.get("id") in batch_ids}
            missing = [task for task in tasks if task["data"].get("id") not in there]
            if missing:
                client.projects.import_tasks(id=self.project_id, request=missing, request_options=NO_RETRY)
        self.batches[str(round_index)] = {"delivered": True, "project_id": self.project_id, "tasks": len(tasks),
                                          "imported": len(missing)}
        self._save()
        return len(missing)

    def _description(self) -> str:
        return f"Labels for the star-al run {self.run_path.resolve()} (key {self.project_key})."

    def _find_project(self, client) -> int | None:
        """The project an earlier create made for this run (its description holds the run's key), if any."""
        try:
            for item in client.projects.list(search=self.project_key, page_size=100, request_options=NO_RETRY):
                found = _as_dict(item)
                if f"(key {self.project_key})" in (found.get("description") or ""):
                    return int(found["id"])
        except Exception as error:  # past the last page Label Studio answers 404, and the SDK raises it
            if getattr(error, "status_code", None) != 404:
                raise
        return None

    def _task_data(self, client) -> list[dict]:
        """The `data` of every task in the project."""
        return [_as_dict(item).get("data") or {} for item in client.tasks.list(project=self.project_id,
                                                                               fields="task_only")]

    # -- in -------------------------------------------------------------------------------------
    def pull(self) -> list[AnswerRow]:
        """(where, id, answer) for each task of the latest batch: its latest submitted, non-cancelled annotation."""
        if self.project_id is None:
            raise StarError(f"{self.run_path}: no batch has reached Label Studio at {self.url} yet "
                            f"(`star resume {self.run}` sends it)")
        client = self._client()
        with self._talking("the annotations"):
            tasks = [_as_dict(item) for item in client.tasks.list(project=self.project_id, fields="all")]
        rounds = [int(r) for r, entry in self.batches.items() if entry.get("delivered")]
        if rounds:  # earlier batches' tasks stay in the project; their labels are in already
            tasks = [t for t in tasks if (t.get("data") or {}).get("star_round") == max(rounds)]
        return label_studio_answers(tasks, f"Label Studio project {self.project_id}")

    # -- plumbing -------------------------------------------------------------------------------
    def _client(self):
        client_class = _sdk_client_class()
        token = os.environ.get(TOKEN_VARIABLE)
        if not token:
            raise StarError(f"set {TOKEN_VARIABLE} to a Label Studio access token (its Account & Settings page)")
        with self._talking("the token"):
            return client_class(base_url=self.url, api_key=token)

    @contextmanager
    def _talking(self, what: str):
        """The SDK's HTTP and connection errors as one line that says what failed and what to do."""
        try:
            yield
        except StarError:
            raise
        except Exception as error:  # the SDK raises its own HTTP errors and httpx's connection errors
            status = getattr(error, "status_code", None)
            if status is not None:
                body = getattr(error, "body", None)
                detail = body.get("detail") if isinstance(body, dict) else body
                if isinstance(body, dict) and body.get("validation_errors"):
                    detail = f"{detail}: {json.dumps(body['validation_errors'])}"
                reason = f"HTTP {status}" + (f" ({str(detail).splitlines()[0][:160]})" if detail else "")
                if status in (401, 403):
                    reason += f"; check {TOKEN_VARIABLE}"
            else:
                reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
            retry = (f"; `star resume {self.run}` (or `star label {self.run} --from label-studio`) sends it "
                     "again (its files are in to_label/)" if what.startswith("round") else "")
            raise StarError(f"Label Studio at {self.url}, {what}: {reason}{retry}") from error

    def _save(self) -> None:
        state = {"url": self.url, "project_id": self.project_id, "batches": self.batches}
        if self.project_key is not None:
            state["project_key"] = self.project_key
        write_json_atomic(self.run_path / STATE_FILE, state)


def _as_dict(item) -> dict:
    if isinstance(item, dict):
        return item
    dumped = item.model_dump() if hasattr(item, "model_dump") else item.dict()
    return json.loads(json.dumps(dumped, default=str))
