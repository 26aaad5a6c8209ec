"""What `build_cache` reports: the series written, the items skipped and why, warnings."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

from srgan_tf.io.errors import InputError


class WrittenSeries(NamedTuple):
    patient_id: str
    key: str
    shape: Tuple[int, int, int]
    missing_slices: int = 0  # left out (unreadable files); listed in PrepareSummary.skipped


@dataclass
class PrepareSummary:
    """Outcome of `build_cache`: what was written, what was skipped and why, the split."""

    output: Path
    written: List[WrittenSeries] = field(default_factory=list)
    skipped: List[InputError] = field(default_factory=list)
    split: Dict[str, List[str]] = field(default_factory=lambda: {"train": [], "test": []})
    warnings: List[str] = field(default_factory=list)
    slices: int = 0
    seconds: float = 0.0

    @property
    def slices_per_second(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0

    def text(self, warnings: bool = True) -> str:
        """End-of-run report: every written series and every skipped item with its reason,
        then the warnings (`warnings=False`: the command prints them as its warning lines)."""
        patients = len({item.patient_id for item in self.written})
        lines = [f"Wrote {len(self.written)} series ({self.slices} slices, {patients} patients) "
                 f"to {self.output} in {self.seconds:.1f} s "
                 f"({self.slices_per_second:.0f} slices/s)."]
        lines += [f"  {item.key}  {'x'.join(map(str, item.shape))}" + (
            f"  ({item.missing_slices} missing slice(s) left out, see below)"
            if item.missing_slices else "") for item in self.written]
        lines.append(f"Split: {len(self.split['train'])} train, {len(self.split['test'])} test "
                     f"patients (test: {', '.join(self.split['test']) or 'none'}).")
        lines.append(f"Skipped {len(self.skipped)} item(s)" + (":" if self.skipped else "."))
        lines += [f"  {error}" for error in self.skipped]
        lines += [f"Warning: {warning}" for warning in self.warnings if warnings]
        return "\n".join(lines)


def no_test_patients_warning(split: Dict[str, List[str]]) -> str:
    """What a split without test patients costs (train and evaluate refuse or say so too)."""
    why = (f"only {len(split['train'])} patient" if len(split["train"]) < 2 else
           "test fraction 0")
    return (f"no test patients ({why}): `srgan-tf evaluate` has nothing to score and training "
            "cannot validate on held-out patients; prepare at least 2 patients with a test "
            "fraction above 0")
