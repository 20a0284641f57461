"""Where people label: every registered labelling tool, and the ones a run uses.

A run that people label sends every batch to each of its tools: files in the run's
`to_label/` always (the batch as JSONL, CSV and a Label Studio import), and Label Studio
when the run was started with its URL (checked before any work, and kept in the run
directory with each batch's delivery, so a push that failed is sent again by `star
resume`). Answers come back through `star label` (a file, or a tool's `pull`) and are
checked whole before any is kept. A new tool is one
LabellingTool subclass (labeling/tool.py) and one `LABELLING_TOOLS.add` line.
"""

from __future__ import annotations

from pathlib import Path

from star_al.labeling.batch_files import BatchFiles
from star_al.labeling.label_studio import LabelStudioProject
from star_al.labeling.tool import LabellingTool
from star_al.registry import Registry

LABELLING_TOOLS: Registry[type[LabellingTool]] = Registry("labelling tool")
LABELLING_TOOLS.add("files", BatchFiles)
LABELLING_TOOLS.add("label-studio", LabelStudioProject)


def labelling_tools_for(run_path: Path, settings: dict[str, str | None] | str | None = None) -> list[LabellingTool]:
    """Every tool a run's batches go to, the files first.

    `settings` maps a tool's name to its setting (e.g. {"label-studio": URL}); a plain
    string is Label Studio's URL (`--label-studio`). A tool the run has used before is
    found from its directory without a setting.
    """
    if not isinstance(settings, dict):
        settings = {"label-studio": settings}
    tools = []
    for name, kind in LABELLING_TOOLS.items():
        tool = kind.for_run(Path(run_path), settings.get(name))
        if tool is not None:
            tools.append(tool)
    return tools


def labelling_tool(run_path: Path, name: str) -> LabellingTool | None:
    """The run's tool `name` (a registered one), if the run uses it."""
    return LABELLING_TOOLS.get(name).for_run(Path(run_path), None)


def batch_places(run_path: Path, round_index: int) -> list[str]:
    """Where round `round_index`'s batch stands in each of the run's tools ("files written",
    "delivered to Label Studio project 3 (32 tasks)", ...), for `star status`."""
    files = BatchFiles(Path(run_path))
    places = [f"files written ({files.stem(round_index).name}.*)"] if files.is_out(round_index) else []
    return places + [place for tool in labelling_tools_for(run_path) if (place := tool.describe(round_index))]
