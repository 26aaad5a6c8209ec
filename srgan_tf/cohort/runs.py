"""`srgan-tf self-supervised` and `srgan-tf infer` over a folder: every volume found
(`io.discover`), outputs mirroring the input tree, one line and one `cohort.csv` row per
volume, re-runs that resume (`ledger`), a share of the volumes per part (`parts`).

self-supervised, for this part's volumes:
1. plan every volume of the folder (acquisition, slice profile; cached in the work folder,
   this part's own volumes first), since a protocol's model is made from all its volumes;
2. group the plans into protocols (`protocols`); for each protocol this part needs, take its
   trained model from `<work>/models/<protocol>/`, or train it there on the pooled in-plane
   slices of (up to `MAX_POOLED_VOLUMES` of) its volumes, under that folder's lock: a part
   that finds another one training it waits, then reuses the result;
3. super-resolve each volume with its protocol's model and write its outputs.
"""
import contextlib
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from tqdm.auto import tqdm

from srgan_tf.cohort.ledger import (DONE, FAILED, PENDING, SKIPPED, Ledger, names_volume, write_csvs)
from srgan_tf.cohort.parts import Part, share
from srgan_tf.cohort.protocols import Decision, Protocol, group_protocols, same_recipe
from srgan_tf.files import DirectoryLock, DirectoryLocked, atomic_write_text
from srgan_tf.io.discover import FoundVolume, discover_volumes, output_paths
from srgan_tf.io.errors import InputError
from srgan_tf.io.paths_guard import lies_within

WORK_DIR_NAME = "srgan-tf-work"  # default work folder inside the output folder
MAX_POOLED_VOLUMES = 16  # a protocol's model trains on the slices of at most this many volumes
LOCK_POLL_S = 2.0


def _prepare_folders(input_root, output_root, work_dir, reads=(), dicom_output=None) -> tuple:
    """(input root, output root, work folder), the last two created; `reads`: what else the
    command reads (the export, --init-model), none of which an output may replace or enter."""
    from srgan_tf.io.paths_guard import refuse_overwriting_inputs

    # absolute: what the work folder records (input signatures, outputs) must not depend on
    # the directory the command was started from
    root, out = Path(input_root).absolute(), Path(output_root).absolute()
    if not root.is_dir():
        raise InputError(root, "is not a folder (a cohort run takes a folder of volumes)")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder; give an output folder for a cohort")
    outputs = {"--output": out, "--dicom-output": dicom_output, "--work-dir": work_dir}
    if _derivatives_folder(root, out):
        # a study's own derivatives folder (BIDS: study/derivatives/srgan-tf): discovery does
        # not look into it, so whatever is written inside it is never taken for an input
        refuse_overwriting_inputs(list(reads), outputs)
        for flag, path in outputs.items():
            if flag != "--output" and path and not lies_within(path, out) \
                    and lies_within(path, root):
                raise InputError(path, f"{flag} lies inside the input folder {root} but outside "
                                       f"--output {out}: the next run would read it as input")
    else:
        refuse_overwriting_inputs([root, *reads], outputs)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir).absolute() if work_dir else out / WORK_DIR_NAME
    work.mkdir(parents=True, exist_ok=True)
    return root, out, work


def _derivatives_folder(root: Path, out: Path) -> bool:
    """Whether `out` is a new or srgan-tf folder strictly inside the input folder `root`, on a
    path whose existing folders below `root` hold no volume files (not inside a DICOM series
    or beside NIfTI inputs)."""
    if not lies_within(out, root) or lies_within(root, out):
        return False
    real_root = Path(os.path.realpath(root))
    folder = Path(os.path.realpath(out)).parent
    while folder != real_root and real_root in folder.parents:
        if folder.is_dir() and any(entry.is_file() and not entry.name.startswith(".")
                                   and not entry.name.endswith((".json", ".tsv", ".txt", ".md"))
                                   for entry in folder.iterdir()):
            return False
        folder = folder.parent
    return True


def _check_shared_inputs(slice_profile: Optional[str] = None, model_dir=None,
                         model_flag: str = "--model") -> None:
    """What every volume uses (a profile file, an export) is checked once, before the loop: a
    wrong flag stops the run (exit 2) rather than failing each volume."""
    if slice_profile is not None:
        from srgan_tf.self_supervised_run.plan import profile_file

        profile_file(slice_profile)
    if model_dir is not None and not (Path(model_dir) / "metadata.json").is_file():
        raise InputError(model_dir, f"{model_flag} expects an srgan-tf export directory (SavedModel "
                                    "+ metadata.json); none is there")


def _discover(root: Path, out: Path, part: Part, progress: bool):
    volumes, problems = discover_volumes(root, exclude=out, progress=progress)
    mine = share(volumes, part)
    kinds = [v.kind for v in volumes]
    print(f"Found {len(volumes)} volumes under {root} ({kinds.count('nifti')} NIfTI, "
          f"{kinds.count('dicom')} DICOM series)" + (f", {len(problems)} unusable DICOM "
          f"file(s) or series" if problems else "") + f"; {part.name()}: {len(mine)} volumes",
          flush=True)
    return volumes, problems, mine


def _line(volume_key: str, row: dict) -> str:
    what = row["status"] + (" earlier" if row.get("reused") and row["status"] == DONE else "")
    detail = row.get("reason") or ", ".join(
        str(row[k]) for k in ("factor", "profile") if row.get(k))
    return f"{what:>12}  {volume_key}  {row.get('seconds', '')} s  {detail}"


def _finish(out: Path, ledger: Ledger, volumes, problems, rows, part: Part) -> int:
    everything = [{"key": v.key, "row": {"input": str(v.source), "status": PENDING,
                                         "output": str(output_paths(out, v.key)[0])}}
                  for v in volumes]
    problem_rows = [{"input": e.path, "status": SKIPPED, "reason": e.reason} for e in problems]
    everything += [{"key": None, "row": row} for row in problem_rows]
    mine = rows + (problem_rows if part.index == 0 else [])
    part_name = f"part-{part.index}-of-{part.count}" if part.count > 1 else None
    csv_path = write_csvs(out, ledger, everything, mine, part_name)
    counts = {status: sum(row["status"] == status for row in rows)
              for status in (DONE, SKIPPED, FAILED)}
    print(f"{counts[DONE]} done, {counts[SKIPPED]} skipped, {counts[FAILED]} failed of "
          f"{len(rows)} volumes ({part.name()}); table: {csv_path}", flush=True)
    others = len(volumes) - len(rows)
    if others and part.source != "--num-parts/--part-id":
        print(f"{others} volumes belong to the other parts of the {part.source} and stay "
              "pending until those run; to do every volume in this one job, pass --num-parts 1 "
              "--part-id 0", flush=True)
    return 1 if counts[FAILED] else 0


def _loop(mine: List[FoundVolume], progress: bool, handle) -> List[dict]:
    rows = []
    bar = tqdm(mine, desc="volumes", unit="volume", disable=not progress, file=sys.stderr)
    for volume in bar:
        row = handle(volume)
        rows.append(row)
        tqdm.write(_line(volume.key, row), file=sys.stdout)
        sys.stdout.flush()
    return rows


# ---------------------------------------------------------------- self-supervised


def _self_supervised_defaults() -> dict:
    """The self-supervised setting's defaults, under the names that ledgers record them by
    (a ledger written before the setting became a preset still matches while they hold)."""
    from srgan_tf.presets import SELF_SUPERVISED_SLICE_PADDING, preset

    train = preset("self-supervised").train
    return {"SELF_SUPERVISED_CALIBRATION_BATCHES": train.bn_calibration_batches,
            "SELF_SUPERVISED_EPOCHS": train.pretrain_epochs,
            "SELF_SUPERVISED_LEARNING_RATE": train.learning_rate,
            "SELF_SUPERVISED_SCHEDULE": train.learning_rate_schedule,
            "SELF_SUPERVISED_SLICE_PADDING": SELF_SUPERVISED_SLICE_PADDING,
            "SELF_SUPERVISED_STEPS": train.total_steps,
            "SELF_SUPERVISED_WARMUP": train.warmup_fraction}


def _plan_settings(options) -> dict:
    # The self-supervised defaults go into the stamp too: a cached decision holds its model
    # recipe, which an upgrade with another default schedule must not reuse.
    defaults = _self_supervised_defaults()
    return {"slice_profile": options.slice_profile, "slice_thickness": options.slice_thickness,
            "target_spacing": options.target_spacing, "steps": options.steps,
            "epochs": options.epochs, "seed": options.seed, "init_model": options.init_model,
            "defaults": defaults}


def _decide(volume: FoundVolume, options, ledger: Ledger):
    """The volume's Decision (cached in its ledger folder), or the exception that skips it
    (an InputError about the volume, cached) or fails it (any other, not cached)."""
    try:
        return _decide_cached(volume, options, ledger)
    except Exception as error:  # planning one volume broke: it fails, the others go on
        return error


def _decide_cached(volume: FoundVolume, options, ledger: Ledger):
    from srgan_tf import runtime
    from srgan_tf.inference.infer import check_input_volume
    from srgan_tf.self_supervised_run.plan import model_recipe, plan_volume

    cache = ledger.folder(volume.key) / "plan.json"
    stamp = {"input": volume.signature(), "settings": _plan_settings(options)}
    try:
        cached = json.loads(cache.read_text())
        if cached["stamp"] == json.loads(json.dumps(stamp)):
            if "error" in cached:
                return InputError(volume.source, cached["error"])
            return Decision(**cached["decision"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    runtime.start_tensorflow()  # quietly, before planning imports it (a re-run never does)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            image = check_input_volume(volume.read(), volume.source, "self-supervised")
            plan = plan_volume(image, options, str(volume.source))
        result = Decision(volume.key, plan.acquisition.to_dict(), plan.profile.to_dict(),
                          plan.reason, [float(v) for v in plan.intensity_range],
                          model_recipe(plan, options))
        payload = {"stamp": stamp, "decision": dataclasses.asdict(result)}
    except InputError as error:
        if not names_volume(error, volume.source):
            raise
        result, payload = error, {"stamp": stamp, "error": error.reason}
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(payload) + "\n")
    return result


def _volume_plan(volume, decision: Decision):
    """The `self_supervised_run.plan.VolumePlan` of a read volume from its cached decision."""
    from srgan_tf.data.acquisition import to_slice_first
    from srgan_tf.self_supervised_run.plan import VolumePlan

    acquisition, profile = _acquisition_profile(decision)
    return VolumePlan(acquisition, to_slice_first(volume, acquisition.slice_axis),
                      tuple(decision.intensity_range), profile, decision.reason)


def _acquisition_profile(decision: Decision):
    """(Acquisition, SliceProfile) of a decision, without reading its volume."""
    from srgan_tf.data.acquisition import Acquisition
    from srgan_tf.data.degradation.slice_profile import SliceProfile

    fields = {f.name for f in dataclasses.fields(Acquisition)}
    acquisition = Acquisition(**{k: (tuple(v) if isinstance(v, list) else v)
                                 for k, v in decision.acquisition.items() if k in fields})
    return acquisition, SliceProfile.from_dict(decision.profile)


def _pooled_slices(protocol: Protocol, found: Dict[str, FoundVolume], decisions, options):
    """The in-plane training slices of (up to MAX_POOLED_VOLUMES evenly spread) members,
    centre-cropped to their common size."""
    from srgan_tf.self_supervised_run.plan import training_config, volume_training_slices

    members = protocol.members
    if len(members) > MAX_POOLED_VOLUMES:
        picks = np.linspace(0, len(members) - 1, MAX_POOLED_VOLUMES).round().astype(int)
        members = [members[i] for i in sorted(set(picks.tolist()))]
    stacks = []
    for key in members:
        plan = _volume_plan(found[key].read(), decisions[key])
        stacks.append(volume_training_slices(plan, training_config(plan.acquisition, options)))
    rows = min(s.shape[1] for s in stacks)
    cols = min(s.shape[2] for s in stacks)
    cropped = [s[:, (s.shape[1] - rows) // 2:(s.shape[1] - rows) // 2 + rows,
                 (s.shape[2] - cols) // 2:(s.shape[2] - cols) // 2 + cols] for s in stacks]
    return np.ascontiguousarray(np.concatenate(cropped)), members


def _adopt_trained_models(protocols: List[Protocol], models_dir: Path) -> None:
    """A protocol whose model an earlier run trained (a finished model whose plan.json fits
    the protocol, `same_recipe`) keeps that model's folder: a volume added to the study, which
    may change a group's first volume and so its name, neither retrains the model nor redoes
    the volumes it served."""
    if not models_dir.is_dir():
        return
    taken = {p.name for p in protocols if (models_dir / p.name / "plan.json").is_file()}
    for protocol in protocols:
        if protocol.name in taken:
            continue
        for folder in sorted(models_dir.iterdir()):
            if folder.name in taken or not (folder / "model" / "export" / "metadata.json").is_file():
                continue
            try:
                saved = json.loads((folder / "plan.json").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(saved, dict) and same_recipe(saved, protocol.seed.recipe):
                protocol.folder, protocol.recipe = folder.name, saved
                taken.add(folder.name)
                break


def _protocol_model(protocol: Protocol, work: Path, found, decisions, options):
    """The protocol's trained model: reused from its folder, or trained there (waiting while
    another process holds the folder's lock)."""
    from srgan_tf.self_supervised_run.model import train_model, trained_model

    folder = work / "models" / protocol.name
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        try:
            lock = DirectoryLock(folder).acquire()
            break
        except DirectoryLocked as error:
            if not waited:
                print(f"Protocol {protocol.name}: waiting for {error.holder}, which trains its "
                      "model", flush=True)
                waited = True
            time.sleep(LOCK_POLL_S)
    try:
        acquisition, profile = _acquisition_profile(protocol.seed)

        def train(run_dir):
            images, used = _pooled_slices(protocol, found, decisions, options)
            print(f"Protocol {protocol.name}: training on {len(images)} slices of "
                  f"{len(used)} volume(s)", flush=True)
            atomic_write_text(folder / "trained_on.json", json.dumps(used, indent=2) + "\n")
            return train_model(images, acquisition, profile, options, run_dir)

        started = time.perf_counter()
        model, reused = trained_model(folder, protocol.model_recipe, train)
        if not reused:
            print(f"Protocol {protocol.name}: model trained in {time.perf_counter() - started:.1f} s"
                  f" -> {model.path}", flush=True)
        return model
    finally:
        lock.release()


def run_cohort_self_supervised(paths, options, part: Part, train_only: bool = False) -> int:
    """`srgan-tf self-supervised --input FOLDER --output OUT_FOLDER`; the exit status (1 when
    a volume failed for a reason other than its input). `train_only`: plan every volume and
    train every protocol's model, then stop (the parts then only apply them)."""
    from srgan_tf import runtime
    from srgan_tf.inference.infer import check_output_locations
    from srgan_tf.self_supervised_run.command import apply_model
    from srgan_tf.self_supervised_run.plan import Timings, self_supervised_inputs

    _check_shared_inputs(options.slice_profile, options.init_model, "--init-model")
    root, out, work = _prepare_folders(paths.input, paths.output, paths.work_dir,
                                       reads=self_supervised_inputs(paths, options)[1:],
                                       dicom_output=paths.dicom_output)
    volumes, problems, mine = _discover(root, out, part, options.progress)
    ledger = Ledger(work)
    found = {v.key: v for v in volumes}
    decisions = {}
    mine_keys = {v.key for v in mine}
    order = mine + [v for v in volumes if v.key not in mine_keys]  # own plans first
    for volume in tqdm(order, desc="planning", unit="volume", disable=not options.progress,
                       file=sys.stderr):
        decisions[volume.key] = _decide(volume, options, ledger)
    protocols = group_protocols([d for d in decisions.values() if isinstance(d, Decision)])
    _adopt_trained_models(protocols, work / "models")
    of_volume = {key: p for p in protocols for key in p.members}
    print(f"{len(protocols)} protocol(s): " + "; ".join(
        f"{p.name} ({len(p.members)} volumes)" for p in protocols), flush=True)
    models = {}
    quiet = dataclasses.replace(options, progress=False)
    if train_only:  # step 1 of the many-machines recipe: every protocol's model, no outputs
        runtime.start_tensorflow()
        for protocol in protocols:
            _protocol_model(protocol, work, found, decisions, quiet)
        return 0

    def handle(volume: FoundVolume) -> dict:
        nifti, dicom = output_paths(out, volume.key, paths.dicom_output)
        decision = decisions[volume.key]
        protocol = of_volume.get(volume.key)
        base = {"input": str(volume.source), "output": str(nifti), "dicom_output": str(dicom or "")}
        if isinstance(decision, Decision):
            base.update(factor=f"{decision.acquisition['factor']:.4g} (model x"
                               f"{decision.acquisition['model_factor']})",
                        profile=f"{decision.profile['shape']} {decision.profile['fwhm_mm']:.2f} mm",
                        model=protocol.name)
        fingerprint = {"input": volume.signature(), "settings": _plan_settings(options),
                       "model": protocol.name if protocol else None,
                       "dicom_output": str(dicom or ""), "clip": options.clip}

        def process():
            if isinstance(decision, Exception):  # planning refused the volume, or broke
                raise decision
            check_output_locations(nifti, dicom)
            if protocol.name not in models:
                runtime.start_tensorflow()
                with contextlib.redirect_stdout(sys.__stdout__):  # training lines show
                    models[protocol.name] = _protocol_model(protocol, work, found, decisions, quiet)
            image = volume.read()
            plan = _volume_plan(image, decision)
            apply_model(models[protocol.name], plan, image, quiet, nifti, dicom, Timings())
            return {"model": str(models[protocol.name].path)}

        return ledger.process(volume.key, base, fingerprint, process, part.name())

    rows = _loop(mine, options.progress, handle)
    return _finish(out, ledger, volumes, problems, rows, part)


# ---------------------------------------------------------------- infer


def run_cohort_infer(model_dir, input_root, output_root, part: Part, *, dicom_output=None,
                     mode: Optional[str] = None, batch_size: int = 8, precision: str = "auto",
                     clip_to_input_range: bool = True, progress: bool = True,
                     slice_padding: Optional[int] = None) -> int:
    """`srgan-tf infer --model EXPORT --input FOLDER --output OUT_FOLDER`: the export loaded
    once (when a volume needs it), every volume of this part super-resolved with it."""
    from srgan_tf.inference.infer import (check_input_volume, check_output_locations,
                                          infer_volume, load_for_inference)

    _check_shared_inputs(model_dir=model_dir)
    root, out, work = _prepare_folders(input_root, output_root, None, reads=[model_dir],
                                       dicom_output=dicom_output)
    volumes, problems, mine = _discover(root, out, part, progress)
    ledger = Ledger(work)
    export = Path(model_dir).resolve()
    stamp = os.stat(export / "metadata.json").st_mtime_ns if (export / "metadata.json").is_file() else 0
    loaded = []

    def handle(volume: FoundVolume) -> dict:
        nifti, dicom = output_paths(out, volume.key, dicom_output)
        base = {"input": str(volume.source), "output": str(nifti),
                "dicom_output": str(dicom or ""), "model": str(model_dir)}
        fingerprint = {"input": volume.signature(), "model": [str(export), stamp], "mode": mode,
                       "precision": precision, "clip": clip_to_input_range,
                       "dicom_output": str(dicom or ""), "slice_padding": slice_padding}

        def work():
            if not loaded:
                with contextlib.redirect_stdout(sys.__stdout__):
                    loaded.append(load_for_inference(model_dir, mode, precision))
            model, chosen_mode, chosen_precision = loaded[0]
            image = check_input_volume(volume.read(), volume.source, chosen_mode)
            check_output_locations(nifti, dicom)
            summary = infer_volume(model, chosen_mode, chosen_precision, image, nifti,
                                   dicom_output=dicom, batch_size=batch_size,
                                   clip_to_input_range=clip_to_input_range, progress=False,
                                   slice_padding=slice_padding)
            return {"factor": "x".join(str(s) for s in summary["scale_hw"])}

        return ledger.process(volume.key, base, fingerprint, work, part.name())

    rows = _loop(mine, progress, handle)
    return _finish(out, ledger, volumes, problems, rows, part)
