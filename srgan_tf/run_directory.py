"""The layout of a training run's folder, written once: every reader and writer of a run names
its files through `RunDirectory` (the names on disk are what old runs hold: resuming needs them).

    runs/<experiment>-<mode>-<scale>x-<timestamp>/
      config.json        the ExperimentConfig as trained
      checkpoints/       one checkpoint per epoch and generator.json, the GeneratorSpec they hold
      logs/              TensorBoard
      history.csv        one row per epoch;  train.log: what the run said, time-stamped
      export_pretrain/   the generator after the MSE phase (SRResNet), when an adversarial one follows
      export/            the run's generator (SavedModel + metadata.json)
      metrics.json  report.md  figures/   the evaluation

`srgan-tf evaluate --output` writes its metrics.json, report.md and figures/ by the same names.

Example:
    run = RunDirectory("runs/demo")
    config = ExperimentConfig.load(run.config)
"""
import dataclasses
from pathlib import Path

PHASE_EXPORTS = {"pretrain": "export_pretrain", "final": "export"}


@dataclasses.dataclass(frozen=True)
class RunDirectory:
    """The paths of one run folder (nothing is created or read).

    Args:
        path: the run folder.
    """

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def generator_spec(self) -> Path:
        """The GeneratorSpec of the checkpointed generator (runs before it: their config's)."""
        return self.checkpoints / "generator.json"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def train_log(self) -> Path:
        return self.path / "train.log"

    @property
    def export(self) -> Path:
        return self.export_of("final")

    @property
    def export_pretrain(self) -> Path:
        return self.export_of("pretrain")

    def export_of(self, phase: str) -> Path:
        """The export of a phase's generator: "pretrain" or "final"."""
        if phase not in PHASE_EXPORTS:
            raise ValueError(f"phase must be one of {', '.join(PHASE_EXPORTS)}. Received: {phase!r}")
        return self.path / PHASE_EXPORTS[phase]

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def figures(self) -> Path:
        return self.path / "figures"
