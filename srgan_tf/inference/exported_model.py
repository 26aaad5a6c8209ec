"""A loaded export (`ExportedModel`): its metadata, its `GeneratorSpec` and batched prediction
on numpy arrays, from an export directory (`load_exported`).
"""
import functools
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from srgan_tf.config import GeneratorSpec
from srgan_tf.inference.export import FORMAT, FORMAT_VERSION, METADATA_FILE
from srgan_tf.inference.serving_graph import SIGNATURES
from srgan_tf.io.errors import InputError


class ExportedModel:
    """A loaded export: metadata plus batched prediction on numpy arrays.

    Args:
        path: the export directory.
        functions: precision ("float32", "bfloat16") -> callable NHWC tensor -> {"sr": tensor}.
        metadata: the parsed metadata.json.
        keep_alive: object owning the functions' variables (the loaded SavedModel).
    """

    def __init__(self, path, functions: Dict[str, object], metadata: dict, keep_alive=None):
        self.path = Path(path)
        self.metadata = metadata
        self._functions = functions
        self._keep_alive = keep_alive  # signatures need their SavedModel object alive

    @functools.cached_property
    def spec(self) -> GeneratorSpec:
        """The exported generator's description (see `spec_from_metadata`); read once, not on
        every `predict` call."""
        return spec_from_metadata(self.metadata)

    @property
    def scale_hw(self) -> Tuple[int, int]:
        return self.spec.scale_hw

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def precisions(self) -> Tuple[str, ...]:
        return tuple(self._functions)

    @property
    def receptive_field(self) -> Tuple[int, int]:
        """LR margin (height, width) that makes tiles exact; 48 if the export lacks it."""
        radius = self.metadata.get("generator", {}).get("receptive_field_lr") or (48, 48)
        return int(radius[0]), int(radius[1])

    @property
    def filters(self) -> int:
        return self.spec.filters

    def predict(self, batch: np.ndarray, batch_size: int = 8, precision: str = "float32",
                out: Optional[np.ndarray] = None) -> np.ndarray:
        """Super-resolve float32 NHWC `batch` ([-1, 1]) in chunks of `batch_size`.

        Args:
            batch: (N, H, W, 1) float32 array.
            batch_size: images per model call.
            precision: "float32" or "bfloat16" (if exported).
            out: optional preallocated (N, H*sh, W*sw, 1) float32 destination.
        """
        if precision not in self._functions:
            raise ValueError(f"precision must be one of {self.precisions}. Received: {precision!r}")
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 1:
            raise ValueError(f"Expected a float32 batch of shape (N, H, W, 1). "
                             f"Received: shape {batch.shape}")
        sh, sw = self.scale_hw
        count, height, width, _ = batch.shape
        if out is None:
            out = np.empty((count, height * sh, width * sw, 1), np.float32)
        function = self._functions[precision]
        for start in range(0, count, max(1, int(batch_size))):
            chunk = np.ascontiguousarray(batch[start:start + batch_size], dtype=np.float32)
            out[start:start + len(chunk)] = function(tf.constant(chunk))["sr"].numpy()
        return out


def load_exported(export_dir) -> ExportedModel:
    """Load an export written by `export_generator`; InputError for anything else.

    Example:
        >>> model = load_exported("runs/exp2/export"); sr = model.predict(lr_batch)
    """
    path = Path(export_dir)
    if not path.exists():
        raise InputError(path, "model directory does not exist")
    if not path.is_dir():
        raise InputError(path, "expected an export directory (SavedModel + metadata.json), "
                               "found a file")
    if not (path / "saved_model.pb").is_file():
        raise InputError(path, "not a SavedModel directory (no saved_model.pb); pass the "
                               "'export' folder of a training run")
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except FileNotFoundError:
        raise InputError(path, f"no {METADATA_FILE}: not an srgan-tf export") from None
    except (OSError, ValueError) as error:
        raise InputError(path, f"unreadable {METADATA_FILE} ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise InputError(path, f"not an srgan-tf export ({METADATA_FILE} format is {found!r}, "
                               f"expected {FORMAT!r})")
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(path, f"export format_version {metadata.get('format_version')} is newer "
                               f"than this srgan-tf reads ({FORMAT_VERSION}); upgrade srgan-tf")
    try:
        spec_from_metadata(metadata)
    except (TypeError, ValueError) as error:
        raise InputError(path, f"{METADATA_FILE} does not describe a generator ({error})") from None
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # corrupt protobuf or variables: one clear line
        raise InputError(path, f"cannot load the SavedModel ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''})") from None
    functions = {precision: loaded.signatures[name] for precision, name in SIGNATURES.items()
                 if name in loaded.signatures}
    if "float32" not in functions:
        raise InputError(path, "SavedModel has no serving_default signature")
    return ExportedModel(path, {p: (lambda f: lambda x: f(lr=x))(f) for p, f in functions.items()},
                         metadata, keep_alive=loaded)


def spec_from_metadata(metadata: dict) -> GeneratorSpec:
    """The `GeneratorSpec` of an export's metadata.json: its "generator" entry, or for exports
    of format_version 1 (before the spec) its "scale_hw" and the training config's model."""
    generator = metadata.get("generator") or {}
    if "scale_hw" in generator:
        return GeneratorSpec.from_dict(generator)
    model = (metadata.get("config") or {}).get("model") or {}
    return GeneratorSpec(tuple(metadata["scale_hw"]), **{
        key: model[key] for key in ("num_residual_blocks", "filters", "bicubic_residual")
        if key in model})
