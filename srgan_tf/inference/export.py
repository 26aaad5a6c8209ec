"""Generator -> self-contained SavedModel + metadata.json + Keras weights, written atomically.

The SavedModel needs neither srgan_tf nor Keras to run: `tf.saved_model.load(dir)
.signatures["serving_default"](lr=x)["sr"]` on float32 NHWC [N, H, W, 1] in [-1, 1].
A second signature, `serving_bfloat16`, computes in bfloat16 (float32 in and out), about
twice as fast on CPUs with AVX512-BF16/AMX (see `serving_graph`). `exported_model` loads it.
"""
import dataclasses
import datetime
import json
from pathlib import Path
from typing import Optional

import keras
import tensorflow as tf

from srgan_tf import __version__
from srgan_tf.config import GeneratorSpec
from srgan_tf.files import staged_folder
from srgan_tf.inference.introspection import policy_name, receptive_radius
from srgan_tf.inference.serving_graph import SIGNATURES, ServingModule

FORMAT = "srgan-tf-export"
# 2: metadata "generator" holds the model's GeneratorSpec (1: scale_hw and mode only)
FORMAT_VERSION = 2
WEIGHTS_FILE = "generator.weights.h5"
METADATA_FILE = "metadata.json"


def _training_policy(generator: keras.Model, config: dict) -> str:
    """The policy the generator was trained in (its config's, resolved), not that of the
    float32 copy being exported; the model's own when there is no config."""
    precision = (config.get("train") or {}).get("precision")
    return precision if precision and precision != "auto" else policy_name(generator)


def _plain(value):
    """Config objects (dataclasses) -> JSON-ready dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _build_metadata(generator, spec: GeneratorSpec, radius, module, metadata) -> dict:
    config = _plain(metadata.get("config")) or {}
    content_loss = metadata.get("content_loss") or (config.get("loss") or {}).get("content_loss")
    facts = {  # the spec's, about the saved graph: they win over anything the caller passed
        "format": FORMAT, "format_version": FORMAT_VERSION,
        # copies of the spec's, for readers of the JSON (the loader reads "generator")
        "scale_hw": list(spec.scale_hw), "mode": spec.mode,
    }
    merged = {
        **facts,
        "normalization": {"range": "[-1,1]", "percentiles": [0.5, 99.5]},
        "content_loss": content_loss,
        "config": config,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "srgan_tf_version": __version__,
        "signatures": {"input": "lr", "output": "sr",
                       "precisions": {precision: name for precision, name in SIGNATURES.items()
                                      if name in module.signatures()},
                       "graph": "folded" if module.graph is not None else "keras"},
    }
    for key, value in metadata.items():
        if key == "config":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **_plain(value)}
        else:
            merged[key] = _plain(value)
    merged.update(facts)
    merged["generator"] = {
        **spec.to_dict(),
        "name": generator.name,
        "parameters": int(generator.count_params()),
        "training_dtype_policy": _training_policy(generator, config),
        "receptive_field_lr": list(radius),
    }
    return merged


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / METADATA_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_generator(generator: keras.Model, export_dir, metadata: Optional[dict] = None, *,
                     spec: GeneratorSpec) -> Path:
    """Write `generator` as a SavedModel plus metadata.json, atomically.

    The directory is assembled under a hidden partial name next to `export_dir` and renamed
    when complete (`files.staged_folder`), so a killed export leaves nothing that looks valid
    and the next export (or `files.remove_stale_partials`) mends it. An existing srgan-tf
    export at `export_dir` is replaced; any other non-empty directory is refused.

    Args:
        generator: Keras model (None, None, 1) -> (H*sh, W*sw, 1), any dtype policy.
        export_dir: destination directory.
        metadata: merged into metadata.json (e.g. {"config": config_dict,
            "content_loss": "mse", "metrics": {...}}); a "scale_hw" must match `spec`.
        spec: the generator's description (`ExperimentConfig.generator_spec()`), written as
            metadata.json "generator" and read back by `load_exported`.

    Example:
        >>> export_generator(generator, "runs/exp2/export", {"config": config},
        ...                  spec=config.generator_spec())
    """
    metadata = dict(metadata or {})
    export_dir = Path(export_dir)
    if export_dir.exists() and any(export_dir.iterdir()) and not _is_export(export_dir):
        raise FileExistsError(f"{export_dir} exists and is not an srgan-tf export; "
                              "choose an empty or new directory")
    if "scale_hw" in metadata and tuple(metadata["scale_hw"]) != spec.scale_hw:
        raise ValueError(f"metadata scale_hw must match the generator's upsampling {spec.scale_hw}. "
                         f"Received: {metadata['scale_hw']}")
    module = ServingModule(generator)
    signatures = module.signatures()
    merged = _build_metadata(generator, spec, receptive_radius(generator), module, metadata)

    export_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(export_dir, existing="replace") as partial:
        tf.saved_model.save(module, str(partial), signatures=signatures)
        # the Keras weights too: the serving graph folds batch norm, so fine-tuning
        # (`self-supervised --init-model`) starts from these
        generator.save_weights(str(partial / WEIGHTS_FILE))
        (partial / METADATA_FILE).write_text(json.dumps(merged, indent=2, default=str) + "\n")
    return export_dir

