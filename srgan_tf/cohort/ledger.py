"""What the work folder remembers of each volume, so re-runs resume and parts never clash.

    <work>/volumes/<id>/record.json   the volume's outcome (status, output, reason, ...)
    <work>/volumes/<id>/.lock         its claim while a process works on it
    <work>/volumes/<id>/log.txt       what the single-volume command would have printed

A claim is `files.DirectoryLock` (a flock the kernel drops when its process dies, even by
SIGKILL): a volume claimed by a live process is left to it; a dead one's claim is taken
over. A record is written (atomically) only after the volume's outputs were renamed into
place, so a volume with a `done` record whose inputs and settings are unchanged is skipped,
and one without is done again from the start.

`cohort.csv` (every volume found, every part's records) is rewritten under the work folder's
lock by each part when it ends; `cohort.part-K-of-N.csv` holds one part's own rows.
"""
import contextlib
import csv
import hashlib
import io
import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

from srgan_tf.files import DirectoryLock, DirectoryLocked, atomic_write_text
from srgan_tf.io.errors import InputError, error_summary
from srgan_tf.io.paths_guard import lies_within

COLUMNS = ("input", "status", "output", "reason", "seconds", "factor", "profile", "model",
           "dicom_output", "part")
DONE, SKIPPED, FAILED, PENDING = "done", "skipped", "failed", "pending"


class Ledger:
    """The per-volume records and claims of one output folder's work folder."""

    def __init__(self, work_dir):
        self.work_dir = Path(work_dir)

    def folder(self, key: str) -> Path:
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self.work_dir / "volumes" / digest

    def record(self, key: str) -> Optional[dict]:
        try:
            return json.loads((self.folder(key) / "record.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def process(self, key: str, base: dict, fingerprint: dict, work: Callable[[], dict],
                part: str) -> dict:
        """The volume's row: its earlier record when it is finished for the same inputs and
        settings (`fingerprint`; the row then has "reused": True), else `base` updated with
        `work()`'s columns and status done, an InputError as `skipped` with its reason, any
        other exception as `failed`.

        `work` runs with the volume claimed and what it prints going to log.txt."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            claim = DirectoryLock(folder).acquire()
        except DirectoryLocked as error:
            return {**base, "status": SKIPPED, "part": part, "reused": True,
                    "reason": f"being processed by another process ({error.holder})"}
        try:
            earlier = self.record(key)
            if earlier and earlier.get("fingerprint") == fingerprint and earlier["status"] != FAILED \
                    and (earlier["status"] != DONE or Path(earlier["output"]).is_file()):
                return {**earlier["row"], "reused": True}
            if earlier and earlier["status"] == DONE:
                _remove_own_dicom(earlier["row"], base)
            started = time.perf_counter()
            log = io.StringIO()
            try:
                with contextlib.redirect_stdout(log):
                    row = {**base, "status": DONE, **work()}
            except InputError as error:
                if names_volume(error, base["input"]):  # the volume itself: skipped, the reason kept
                    row = {**base, "status": SKIPPED, "reason": error.reason}
                else:  # an output, the model or a flag: not an input reason, not reused
                    row = {**base, "status": FAILED, "reason": f"{error.path}: {error.reason}"}
            except Exception as error:  # a bug or a resource problem: the others go on
                row = {**base, "status": FAILED, "reason": error_summary(error)}
                log.write(traceback.format_exc())
            row.update(seconds=round(time.perf_counter() - started, 1), part=part)
            atomic_write_text(folder / "log.txt", log.getvalue())
            atomic_write_text(folder / "record.json", json.dumps(
                {"key": key, "status": row["status"], "output": row.get("output", ""),
                 "fingerprint": fingerprint, "row": row}, indent=2) + "\n")
            return row
        finally:
            claim.release()


def names_volume(error: InputError, volume_input: str) -> bool:
    """Whether an InputError names the volume (its file, its series folder or a file in it)."""
    return lies_within(error.path, volume_input)


def _remove_own_dicom(earlier_row: dict, base: dict) -> None:
    """A volume done before is being done again (its NIfTI output was deleted, or its input
    changed): the DICOM series this folder's run wrote for it, at the same place, is its own
    and is replaced rather than refused."""
    folder = earlier_row.get("dicom_output") or ""
    if folder and folder == base.get("dicom_output") and Path(folder).is_dir():
        shutil.rmtree(folder)


def rows_text(rows: List[dict]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: row.get(column, "") for column in COLUMNS})
    return stream.getvalue()


def write_csvs(output_root: Path, ledger: Ledger, everything: List[Dict], mine: List[dict],
               part_name: Optional[str]) -> Path:
    """This part's `cohort.part-K-of-N.csv` (when there are several parts) and the merged
    `cohort.csv`: one row per volume found (`everything`: {"key", "row"} with the row of a
    volume no part recorded yet), each part's recorded row where there is one."""
    if part_name:
        atomic_write_text(output_root / f"cohort.{part_name}.csv", rows_text(mine))
    while True:  # the work folder's lock serialises the merged file's writers (briefly held)
        try:
            lock = DirectoryLock(ledger.work_dir).acquire()
            break
        except DirectoryLocked:
            time.sleep(0.2)
    try:
        merged = []
        for item in everything:
            record = ledger.record(item["key"]) if item.get("key") else None
            merged.append(record["row"] | {"input": item["row"]["input"]} if record else item["row"])
        atomic_write_text(output_root / "cohort.csv", rows_text(merged))
    finally:
        lock.release()
    return output_root / "cohort.csv"
