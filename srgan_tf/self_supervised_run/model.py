"""The model of a self-supervised plan: reused when one was trained for the same recipe,
else trained on the volume's own in-plane slices (`training.own_slices`) and exported."""
import json
from pathlib import Path

from srgan_tf.self_supervised_run.plan import (SelfSupervisedOptions, VolumePlan, training_config,
                                               volume_training_slices)

PLAN_FILE = "plan.json"  # beside a trained model: the recipe it was trained for


def _say(text: str) -> None:
    print(text, flush=True)


def trained_model(model_dir: Path, recipe: dict, train, *, retrain: bool = False):
    """The model of `recipe` in `model_dir`: reused when a finished one was trained for the
    same recipe (`plan.json`), else trained by `train(model_dir / "model")`.

    A model of another recipe (or of a version that wrote no plan.json) is refused unless
    `retrain`; a training that was interrupted (plan.json, no finished export) starts over.

    Returns:
        (loaded export, True when it was reused).
    """
    import shutil

    from srgan_tf.files import atomic_write_text
    from srgan_tf.inference.exported_model import load_exported
    from srgan_tf.io.errors import InputError
    from srgan_tf.io.paths_guard import lies_within
    from srgan_tf.run_directory import RunDirectory

    recipe = json.loads(json.dumps(recipe))
    plan_file, run_dir = Path(model_dir) / PLAN_FILE, Path(model_dir) / "model"
    export = RunDirectory(run_dir).export
    if plan_file.is_file() and not retrain:
        saved = json.loads(plan_file.read_text())
        if saved == recipe and (export / "metadata.json").is_file():
            _say(f"Reusing the model trained for this plan: {export} (--retrain trains a new one)")
            return load_exported(export), True
        if saved != recipe:
            changed = sorted(k for k in set(saved) | set(recipe) if saved.get(k) != recipe.get(k))
            raise InputError(model_dir, f"holds a model trained for another plan (it differs in "
                                        f"{', '.join(changed)}); pass --retrain to replace it, "
                                        "or choose a new --work-dir")
    elif run_dir.exists() and any(run_dir.iterdir()) and not retrain:
        raise InputError(model_dir, "already holds a trained model (model/) without the plan.json "
                                    "it was trained for; pass --retrain to replace it, or choose "
                                    "a new --work-dir")
    start = recipe.get("init_model")
    if start and lies_within(start, run_dir):
        raise InputError(start, f"--init-model lies inside {run_dir}, which this run replaces "
                                "with the model it trains; copy the export elsewhere first")
    shutil.rmtree(run_dir, ignore_errors=True)
    atomic_write_text(plan_file, json.dumps(recipe, indent=2) + "\n")
    return train(run_dir), False


def train_model(images, acquisition, profile, options: SelfSupervisedOptions, run_dir: Path):
    """Train and export a self-supervised model on `images` (one volume's training slices, or
    the pooled slices of several volumes of one acquisition); the loaded export."""
    from srgan_tf.data.pipelines.self_supervised import training_pixel_mm
    from srgan_tf.inference.exported_model import load_exported
    from srgan_tf.training.own_slices import train_on_volume
    from srgan_tf.training_run import RunExporter

    config = training_config(acquisition, options)
    pixel = training_pixel_mm(acquisition)
    taps = profile.sampling_taps(acquisition.model_factor, pixel)
    _say(f"Training: {len(images)} in-plane slices of {images.shape[1]}x{images.shape[2]} "
         f"pixels of {pixel:.4g} mm, x{acquisition.model_factor} height-only, "
         f"{config.train.pretrain_epochs} epochs x {config.train.steps_per_epoch} steps of "
         f"{config.data.batch_size} patches {config.data.train_size}^2")
    initial = None
    if options.init_model:
        initial, model = _initial_weights(options.init_model, config)
        config = config.updated(model=model)
        _say(f"Fine-tuning {options.init_model} ({config.model.num_residual_blocks} blocks x "
             f"{config.model.filters} filters) on this volume")
    exporter = RunExporter()
    train_on_volume(images, taps, config, Path(run_dir), progress=options.progress,
                    initial_weights=initial, on_phase_end=exporter)
    return load_exported(exporter.written["final"])


def train_volume_model(plan: VolumePlan, options: SelfSupervisedOptions, run_dir: Path):
    """Train and export the model of one planned volume on its own slices; the loaded export."""
    images = volume_training_slices(plan, training_config(plan.acquisition, options))
    return train_model(images, plan.acquisition, plan.profile, options, run_dir)


def _initial_weights(init_model, config):
    """(weights file, model config) of a supervised export for fine-tuning: the run trains the
    export's generator (its GeneratorSpec: blocks, filters, bicubic residual), which must
    upsample by the factor this volume needs."""
    import dataclasses

    from srgan_tf.inference.export import METADATA_FILE, WEIGHTS_FILE
    from srgan_tf.inference.exported_model import spec_from_metadata
    from srgan_tf.io.errors import InputError

    path = Path(init_model)
    weights, metadata_path = path / WEIGHTS_FILE, path / METADATA_FILE
    if not metadata_path.is_file() or not weights.is_file():
        raise InputError(path, f"--init-model needs an srgan-tf export with {METADATA_FILE} and "
                               f"{WEIGHTS_FILE} (exports written by this version; re-export an older "
                               "run with `srgan-tf export --run RUN --output DIR`)")
    try:
        spec = spec_from_metadata(json.loads(metadata_path.read_text()))
    except (ValueError, TypeError, KeyError) as error:
        raise InputError(metadata_path, f"does not describe a generator ({error})") from None
    if spec.scale_hw != config.data.scale_hw:
        raise InputError(path, f"--init-model upsamples by {spec.scale_hw} (height, width); "
                               f"this volume needs a height-only x{config.data.scale} model "
                               f"({config.data.scale_hw}); train one with `exp2_aniso.py --scale "
                               f"{config.data.scale}` or choose --target-spacing accordingly")
    return str(weights), dataclasses.replace(
        config.model, num_residual_blocks=spec.num_residual_blocks, filters=spec.filters,
        bicubic_residual=spec.bicubic_residual)
