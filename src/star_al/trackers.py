"""Experiment trackers (--report-to tensorboard|wandb|mlflow|trackio) through accelerate's.

A run logs its per-step training losses and each round's measurements; accelerate writes
them from the main process only. The tracker's files live in the run directory
(`trackers/`), beside rounds.jsonl, which keeps its own summary of each round's losses.
"""

from __future__ import annotations

from pathlib import Path

from star_al.errors import StarError

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")


def check_tracker(name: str) -> None:
    """A one-line refusal for an unknown tracker or one whose package is not installed."""
    import accelerate.utils

    if name not in TRACKERS:
        raise StarError(f"unknown --report-to {name!r}; choose one of {', '.join(TRACKERS)}")
    if not getattr(accelerate.utils, f"is_{name}_available")():
        raise StarError(f"--report-to {name} needs the {name} package: pip install 'star-al[{name}]' "
                        f"(or pip install {name})")


class Tracker:
    """One run's tracker: started once the run directory is claimed, fed steps and rounds."""

    def __init__(self, name: str, on_cpu: bool):
        check_tracker(name)
        self.name, self.on_cpu, self.accelerator = name, on_cpu, None

    def start(self, run_path: Path, config: dict) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        project = ProjectConfiguration(project_dir=str(run_path), logging_dir=str(Path(run_path) / "trackers"))
        self.accelerator = Accelerator(log_with=self.name, project_config=project, cpu=self.on_cpu)
        flat = {key: value for key, value in _flatten(config).items()
                if isinstance(value, (str, int, float, bool))}
        self.accelerator.init_trackers(Path(run_path).name or "star-al", config=flat)

    def log(self, values: dict, step: int) -> None:
        self.accelerator.log(values, step=step)

    def end(self) -> None:
        if self.accelerator is not None:
            self.accelerator.end_training()


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def loss_summary(losses: list[float]) -> dict | None:
    """First, last, lowest and mean training loss of a round: enough to see a collapse afterwards."""
    if not losses:
        return None
    return {"first": losses[0], "last": losses[-1], "min": min(losses), "mean": sum(losses) / len(losses)}
