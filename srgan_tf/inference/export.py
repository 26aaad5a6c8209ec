"""Generator -> self-contained SavedModel + metadata.json + Keras weights, written atomically.

The SavedModel needs neither srgan_tf nor Keras to run: `tf.saved_model.load(dir)
.signatures["serving_default"](lr=x)["sr"]` on float32 NHWC [N, H, W, 1] in [-1, 1].
A second signature, `serving_bfloat16`, computes in bfloat16 (float32 in and out), about
twice as fast on CPUs with AVX512-BF16/AMX (see `serving_graph`). `exported_model` loads it.
"""
import dataclasses
import datetime
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

import keras
import tensorflow as tf

from srgan_tf import __version__
from srgan_tf.config import mode_of
from srgan_tf.inference.introspection import conv_layers, policy_name, probe_scale, receptive_radius
from srgan_tf.inference.serving_graph import SIGNATURES, ServingModule

FORMAT = "srgan-tf-export"
FORMAT_VERSION = 1
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


def _build_metadata(generator, scale_hw, radius, module, metadata) -> dict:
    config = _plain(metadata.get("config")) or {}
    content_loss = metadata.get("content_loss") or (config.get("loss") or {}).get("content_loss")
    convs = conv_layers(generator)
    merged = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scale_hw": list(scale_hw),
        "mode": mode_of(scale_hw),
        "normalization": {"range": "[-1,1]", "percentiles": [0.5, 99.5]},
        "content_loss": content_loss,
        "config": config,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "srgan_tf_version": __version__,
        "generator": {
            "name": generator.name,
            "parameters": int(generator.count_params()),
            "filters": int(convs[0].filters) if convs and hasattr(convs[0], "filters") else 64,
            "training_dtype_policy": _training_policy(generator, config),
            "receptive_field_lr": list(radius),
        },
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
    # Facts about the saved graph win over anything the caller passed.
    merged.update(format=FORMAT, format_version=FORMAT_VERSION, scale_hw=list(scale_hw),
                  mode=mode_of(scale_hw))
    return merged


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / METADATA_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_generator(generator: keras.Model, export_dir, metadata: Optional[dict] = None) -> Path:
    """Write `generator` as a SavedModel plus metadata.json, atomically.

    The directory is assembled under a hidden temporary name next to `export_dir` and renamed
    when complete, so a killed export leaves nothing that looks valid. An existing srgan-tf
    export at `export_dir` is replaced; any other non-empty directory is refused.

    Args:
        generator: Keras model (None, None, 1) -> (H*sh, W*sw, 1), any dtype policy.
        export_dir: destination directory.
        metadata: merged into metadata.json (e.g. {"config": config_dict,
            "content_loss": "mse", "metrics": {...}}); "scale_hw" must match the model.

    Example:
        >>> export_generator(generator, "runs/exp2/export", {"config": config})
    """
    metadata = dict(metadata or {})
    export_dir = Path(export_dir)
    if export_dir.exists() and any(export_dir.iterdir()) and not _is_export(export_dir):
        raise FileExistsError(f"{export_dir} exists and is not an srgan-tf export; "
                              "choose an empty or new directory")
    scale_hw = probe_scale(generator)
    if "scale_hw" in metadata and tuple(metadata["scale_hw"]) != scale_hw:
        raise ValueError(f"metadata scale_hw must match the generator's upsampling {scale_hw}. "
                         f"Received: {metadata['scale_hw']}")
    module = ServingModule(generator)
    signatures = module.signatures()
    merged = _build_metadata(generator, scale_hw, receptive_radius(generator), module, metadata)

    export_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    partial = export_dir.with_name(f".{export_dir.name}.partial-{token}")
    retired = export_dir.with_name(f".{export_dir.name}.old-{token}")
    try:
        tf.saved_model.save(module, str(partial), signatures=signatures)
        # the Keras weights too: the serving graph folds batch norm, so fine-tuning
        # (`self-supervised --init-model`) starts from these
        generator.save_weights(str(partial / WEIGHTS_FILE))
        (partial / METADATA_FILE).write_text(json.dumps(merged, indent=2, default=str) + "\n")
        if export_dir.exists():
            os.replace(export_dir, retired)
        os.replace(partial, export_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return export_dir

