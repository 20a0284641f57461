"""A small Label Studio stand-in over HTTP, for the delivery tests: the endpoints star-al's
Label Studio tool calls (/health, whoami, create and list projects, import tasks, list
tasks), with faults to order: imports refused (HTTP 500), or cut off after Label Studio
has kept part of them (the connection dropped without an answer), a project created whose
answer is lost the same way, and the server stopped (its port closed) and started again on
the same port.

`SdkStandIn` speaks to it as the label-studio-sdk client does (the same calls, the same
HTTP), for machines without the SDK installed; with the SDK, the tests use the SDK itself.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLabelStudio:
    """Projects and tasks in memory behind a real HTTP port; `imports` counts import requests."""

    def __init__(self, token: str = "fake-token", page_size: int = 3):
        self.token, self.page_size = token, page_size
        self.projects: dict[int, dict] = {}
        self.tasks: list[dict] = []
        self.imports = 0
        self.refuse_imports = 0     # the next n imports answer HTTP 500, keeping nothing
        self.cut_imports_after = None  # the next import keeps this many tasks, then drops the connection
        self.lose_create_answer = False  # the next project create is kept, its answer lost (connection dropped)
        self.health_status = 200
        self.port = 0
        self._server = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the port: every request is refused until `start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def project_tasks(self, project_id: int, round_index: int | None = None) -> list[dict]:
        return [t for t in self.tasks if t["project"] == project_id
                and (round_index is None or t["data"].get("star_round") == round_index)]

    def annotate(self, task: dict, answer: str, cancelled: bool = False) -> None:
        task["annotations"].append({"id": len(task["annotations"]) + 1, "was_cancelled": cancelled,
                                    "updated_at": "2026-11-28T10:00:00Z",
                                    "result": [{"from_name": "answer", "to_name": "question", "type": "choices",
                                                "value": {"choices": [answer]}}]})


def _handler(studio: FakeLabelStudio):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _answer(self, status: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") in (f"Token {studio.token}", f"Bearer {studio.token}"):
                return True
            self._answer(401, {"detail": "Invalid token."})
            return False

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path.rstrip("/") == "/health":
                return self._answer(studio.health_status, {"status": "UP" if studio.health_status == 200 else "DOWN"})
            if not self._authorised():
                return None
            if url.path.rstrip("/") == "/api/current-user/whoami":
                return self._answer(200, {"id": 1, "email": "annotator@example.com", "username": "annotator"})
            if url.path.rstrip("/") == "/api/projects":  # as Django REST framework pages, 404 past the last
                term = query.get("search", "").lower()
                found = [p for p in studio.projects.values()
                         if term in p["title"].lower() or term in (p.get("description") or "").lower()]
                page, size = int(query.get("page", 1)), int(query.get("page_size", studio.page_size))
                shown = found[(page - 1) * size: page * size]
                if page > 1 and not shown:
                    return self._answer(404, {"detail": "Invalid page."})
                return self._answer(200, {"count": len(found), "next": None, "previous": None, "results": shown})
            if url.path.rstrip("/") == "/api/tasks":
                tasks = studio.project_tasks(int(query["project"]))
                page, size = int(query.get("page", 1)), int(query.get("page_size", studio.page_size))
                shown = tasks[(page - 1) * size: page * size]
                if page > 1 and not shown:
                    return self._answer(404, {"detail": "Invalid page."})
                if query.get("fields") != "all":
                    shown = [{k: v for k, v in t.items() if k not in ("annotations", "predictions")} for t in shown]
                return self._answer(200, {"tasks": shown, "total": len(tasks), "total_annotations": 0,
                                          "total_predictions": 0})
            return self._answer(404, {"detail": "Not found."})

        def do_POST(self):
            path = urllib.parse.urlparse(self.path).path.rstrip("/")
            if not self._authorised():
                return None
            body = self._body()
            if path == "/api/projects":
                if not 3 <= len(body["title"]) <= 50:
                    return self._answer(400, {"detail": "Validation error", "validation_errors": {
                        "title": ["Ensure this field has no more than 50 characters."]}})
                project = {"id": len(studio.projects) + 1, "title": body["title"], "label_config": body["label_config"],
                           "description": body.get("description", "")}
                studio.projects[project["id"]] = project
                if studio.lose_create_answer:
                    studio.lose_create_answer = False
                    self.close_connection = True
                    return None
                return self._answer(201, project)
            parts = path.split("/")
            if len(parts) == 5 and parts[:3] == ["", "api", "projects"] and parts[4] == "import":
                studio.imports += 1
                if studio.refuse_imports:
                    studio.refuse_imports -= 1
                    return self._answer(500, {"detail": "Server Error (500)"})
                kept = body if studio.cut_imports_after is None else body[:studio.cut_imports_after]
                for item in kept:
                    studio.tasks.append({"id": len(studio.tasks) + 1, "project": int(parts[3]), "data": item["data"],
                                         "annotations": [], "predictions": item.get("predictions", [])})
                if studio.cut_imports_after is not None:
                    studio.cut_imports_after = None
                    self.close_connection = True  # no answer: the client sees the connection dropped
                    return None
                return self._answer(201, {"task_count": len(kept), "annotation_count": 0,
                                          "prediction_count": 0, "duration": 0.0})
            return self._answer(404, {"detail": "Not found."})

    return Handler


class StandInError(Exception):
    """An HTTP error answer, with the fields of the SDK's ApiError."""

    def __init__(self, status_code: int, body):
        super().__init__(f"status_code: {status_code}, body: {body}")
        self.status_code, self.body = status_code, body


class SdkStandIn:
    """The calls star-al makes of `label_studio_sdk.LabelStudio`, made over HTTP the same way."""

    def __init__(self, base_url: str, api_key: str):
        self.base_url, self.api_key = base_url.rstrip("/"), api_key
        self.projects, self.tasks, self.users = _Projects(self), _Tasks(self), _Users(self)

    def request(self, method: str, path: str, body=None, **query):
        url = f"{self.base_url}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Authorization": f"Token {self.api_key}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise StandInError(error.code, json.loads(error.read() or b"null")) from None


class _Item(dict):
    def __getattr__(self, name):
        return self[name]


class _Projects:
    def __init__(self, client):
        self.client = client

    def create(self, title, label_config, description="", request_options=None):
        return _Item(self.client.request("POST", "api/projects/", {"title": title, "label_config": label_config,
                                                                   "description": description}))

    def list(self, search=None, page_size=None, request_options=None):
        """Page after page as the SDK's pager: it asks for the next page while the last had items, and an
        answer of 404 past the end is raised, as the SDK raises it."""
        page = 1
        while True:
            query = {key: value for key, value in (("search", search), ("page_size", page_size)) if value is not None}
            projects = self.client.request("GET", "api/projects/", page=page, **query)["results"]
            if not projects:
                return
            yield from (_Item(project) for project in projects)
            page += 1

    def import_tasks(self, id, request, request_options=None):  # noqa: A002 (the SDK's name)
        return self.client.request("POST", f"api/projects/{id}/import", list(request))


class _Tasks:
    def __init__(self, client):
        self.client = client

    def list(self, project, fields="all"):
        page = 1
        while True:
            try:
                tasks = self.client.request("GET", "api/tasks/", project=project, fields=fields, page=page)["tasks"]
            except StandInError as error:
                if error.status_code == 404:
                    return
                raise
            if not tasks:
                return
            yield from tasks
            page += 1


class _Users:
    def __init__(self, client):
        self.client = client

    def whoami(self, request_options=None):
        return self.client.request("GET", "api/current-user/whoami")
