"""Whole-volume super-resolution: through-plane (Exp. 3) and in-plane, streamed in batches.

Through-plane (paper, Section 3, third experiment): the anisotropic model (scale_hw (s, 1))
upsamples the image height, so it is applied to the through-plane images whose height is the
slice axis, in both directions: volume[:, r, :] (slices x cols, a coronal image for an axial
acquisition) and volume[:, :, c] (slices x rows, sagittal). Each set is stacked back into a
(slices*s, rows, cols) volume and the two are averaged. The slice axis is padded by
half-sample reflection (the degradation's border rule) by the model's receptive field before
the model sees it, and the padding's output cropped: the convolutions' own zero padding is
mid-grey in the normalised range (background -1) and left bands at the first and last slices.
In-plane: an isotropic model (s, s) applied slice by slice -> (slices, rows*s, cols*s).
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from srgan_tf.config import INFERENCE_MODES, mode_of
from srgan_tf.data.intensity import denormalize, normalize, robust_range
from srgan_tf.inference.tiling import choose_tiling, estimate_bytes, plan_tiles, predict_tiled
from srgan_tf.io.errors import InputError
from srgan_tf.io.volume import Volume

MODES = INFERENCE_MODES


@dataclass
class VolumeSR:
    """Result of `super_resolve_volume`.

    Args:
        volume: the SR volume in scanner units (through-plane: the average of both directions).
        directions: through-plane only, when asked for: "coronal" and "sagittal" SR volumes.
        intensity_range: the (low, high) used to normalise the input.
        tiles_per_image: 1 when images went through whole, else tiles per image.
        batches: model calls' batches run (progress units).
    """

    volume: Volume
    directions: Dict[str, Volume] = field(default_factory=dict)
    intensity_range: Tuple[float, float] = (0.0, 1.0)
    tiles_per_image: int = 1
    batches: int = 0


def _source_name(volume: Volume) -> str:
    if volume.source_paths:
        return volume.source_paths[0]
    return volume.series_description or "volume"


def check_mode(model, mode: str, source="model") -> None:
    """InputError unless `model` fits `mode` (through-plane: (s, 1), s > 1; in-plane: (s, s))."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: {mode!r}")
    sh, sw = model.scale_hw
    try:
        model_mode = mode_of((sh, sw))
    except ValueError:
        model_mode = None  # neither iso nor aniso: fits no inference mode
    if mode == "through-plane" and model_mode != "aniso":
        raise InputError(source, f"through-plane mode needs an anisotropic model (scale_hw "
                                 f"(s, 1), Exp. 2); this model is {model.mode} with scale_hw "
                                 f"{(sh, sw)}. Use --mode in-plane for isotropic models")
    if mode == "in-plane" and model_mode != "iso":
        raise InputError(source, f"in-plane mode needs an isotropic model (scale_hw (s, s), "
                                 f"Exp. 1); this model is {model.mode} with scale_hw {(sh, sw)}. "
                                 "Use --mode through-plane for anisotropic models")


def sr_geometry(volume: Volume, factors: Sequence[int]):
    """Spacing and origin of `volume` resampled by `factors` along (slice, row, col).

    Original voxel k along an axis covers [x_k - d/2, x_k + d/2]; the SR voxel j centre sits
    at x_0 - d/2 + (j + 0.5) d/s, so the first centre moves by -d/2 + d/(2s).
    """
    spacing = tuple(float(d) / int(s) for d, s in zip(volume.spacing, factors))
    origin = np.asarray(volume.origin, dtype=np.float64)
    for axis, (d, s) in enumerate(zip(volume.spacing, factors)):
        origin = origin + (-d / 2 + d / (2 * int(s))) * volume.direction[axis]
    return spacing, tuple(origin)


class _Streamer:
    """Runs images through the model in memory-bounded batches (tiled when needed)."""

    def __init__(self, model, image_hw, *, batch_size, budget_bytes, precision, tile_axes):
        self.model, self.precision = model, precision
        scale, margin = model.scale_hw, model.receptive_field
        tile = choose_tiling(image_hw, scale, model.filters, budget_bytes, margin, tile_axes)
        self.tiles = None if tile is None else plan_tiles(image_hw, tile, margin, scale)
        if self.tiles is None:
            per_image = estimate_bytes(image_hw, scale, model.filters)
        else:
            per_image = max(estimate_bytes((t.source[0].stop - t.source[0].start,
                                            t.source[1].stop - t.source[1].start),
                                           scale, model.filters) for t in self.tiles)
        self.images_per_batch = int(max(1, min(batch_size, budget_bytes // max(per_image, 1))))

    def batches(self, count: int) -> int:
        return -(-count // self.images_per_batch)

    def run(self, count: int, take: Callable, put: Callable, bar) -> None:
        """take(start, stop) -> (b, H, W) LR images; put(start, stop, (b, H*sh, W*sw) SR)."""
        def predict(batch):
            return self.model.predict(batch, batch_size=len(batch), precision=self.precision)

        for start in range(0, count, self.images_per_batch):
            stop = min(start + self.images_per_batch, count)
            lr = np.ascontiguousarray(take(start, stop), dtype=np.float32)[..., None]
            if self.tiles is None:
                sr = predict(lr)
            else:
                sr = predict_tiled(predict, lr, self.model.scale_hw, self.tiles)
            put(start, stop, sr[..., 0])
            del lr, sr
            bar.update(1)


def _through_plane(model, normalized, keep_directions, bar_factory, pad, **stream):
    slices, rows, cols = normalized.shape
    scale = model.scale_hw[0]
    padded = np.pad(normalized, ((pad, pad), (0, 0), (0, 0)), mode="symmetric")
    keep = slice(pad * scale, (pad + slices) * scale)  # output rows of the real slices
    coronal = _Streamer(model, (slices + 2 * pad, cols), tile_axes=(1,), **stream)
    sagittal = _Streamer(model, (slices + 2 * pad, rows), tile_axes=(1,), **stream)
    total = np.empty((slices * scale, rows, cols), np.float32)
    directions = {}
    with bar_factory(coronal.batches(rows) + sagittal.batches(cols)) as bar:
        target = np.empty_like(total) if keep_directions else total

        def put_coronal(start, stop, sr):
            target[:, start:stop, :] = sr[:, keep].transpose(1, 0, 2)

        coronal.run(rows, lambda a, b: padded[:, a:b, :].transpose(1, 0, 2), put_coronal, bar)
        if keep_directions:
            directions["coronal"], target = target, np.empty_like(total)

        def put_sagittal(start, stop, sr):
            if keep_directions:
                target[:, :, start:stop] = sr[:, keep].transpose(1, 2, 0)
            else:  # accumulate into the coronal result: no second full-size volume
                target[:, :, start:stop] += sr[:, keep].transpose(1, 2, 0)

        sagittal.run(cols, lambda a, b: padded[:, :, a:b].transpose(2, 0, 1), put_sagittal, bar)
        del padded
        if keep_directions:
            directions["sagittal"] = target
            np.add(directions["coronal"], directions["sagittal"], out=total)
        total *= 0.5
    return total, directions, ((coronal, rows), (sagittal, cols))


def _in_plane(model, normalized, bar_factory, **stream):
    slices, rows, cols = normalized.shape
    sh, sw = model.scale_hw
    streamer = _Streamer(model, (rows, cols), tile_axes=(0, 1), **stream)
    total = np.empty((slices, rows * sh, cols * sw), np.float32)

    def put(start, stop, sr):
        total[start:stop] = sr

    with bar_factory(streamer.batches(slices)) as bar:
        streamer.run(slices, lambda a, b: normalized[a:b], put, bar)
    return total, {}, ((streamer, slices),)


def super_resolve_volume(model, volume: Volume, mode: str = "through-plane", *, batch_size: int = 8,
                         memory_budget_mb: float = 2048, precision: str = "float32",
                         return_directions: bool = False, progress: bool = False,
                         intensity_range=None, slice_padding=None) -> VolumeSR:
    """Super-resolve a whole volume with an exported (or wrapped) generator.

    Intensities are normalised as in training (robust range of the whole input volume) and
    mapped back to scanner units. Batches stream into a preallocated output; images whose
    activations exceed `memory_budget_mb` are split into exact overlapping tiles.

    Args:
        model: an `ExportedModel` (from `load_exported`).
        volume: input `Volume` (slices, rows, cols) in scanner units.
        mode: "through-plane" (anisotropic model, Exp. 3) or "in-plane" (isotropic model).
        batch_size: images per model call at most.
        memory_budget_mb: activation memory allowed for one model call.
        precision: "float32" or "bfloat16" (an export's `serving_bfloat16` signature).
        return_directions: through-plane only: also return the two directional volumes.
        progress: show a tqdm bar over batches.
        intensity_range: (low, high) mapped to [-1, 1] (default: the volume's robust range),
            e.g. the range a self-supervised model was trained with.
        slice_padding: through-plane only: slices reflected beyond each end (default, and at
            most: the model's receptive field, which makes the end slices exact; fewer save
            time where a model's influence fades sooner, measured per model family).

    Example:
        >>> result = super_resolve_volume(load_exported("export"), read_volume("t2.nii.gz"))
    """
    check_mode(model, mode, getattr(model, "path", "model"))
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1. Received: {batch_size}")
    array = np.asarray(volume.array)
    if mode == "through-plane" and array.shape[0] < 2:
        raise InputError(_source_name(volume), f"through-plane SR needs at least 2 slices; "
                                               f"found shape {array.shape}")
    if min(array.shape) < 1:
        raise InputError(_source_name(volume), f"empty volume, shape {array.shape}")
    try:
        intensity_range = robust_range(array) if intensity_range is None else intensity_range
    except ValueError as error:
        raise InputError(_source_name(volume), str(error)) from None
    normalized = normalize(array, intensity_range)

    def bar_factory(total):
        return tqdm(total=total, desc=f"{mode} SR", unit="batch", disable=not progress,
                    leave=False)

    stream = dict(batch_size=int(batch_size), precision=precision,
                  budget_bytes=int(memory_budget_mb * 2 ** 20))
    if mode == "through-plane":
        pad = model.receptive_field[0]
        pad = pad if slice_padding is None else max(0, min(pad, int(slice_padding)))
        total, directions, streamers = _through_plane(model, normalized, return_directions,
                                                      bar_factory, pad, **stream)
        factors = (model.scale_hw[0], 1, 1)
    else:
        total, directions, streamers = _in_plane(model, normalized, bar_factory, **stream)
        factors = (1, *model.scale_hw)
    del normalized
    spacing, origin = sr_geometry(volume, factors)
    label = f"{volume.series_description} SR x{max(model.scale_hw)} srgan-tf".strip()

    def as_volume(values, suffix=""):
        return volume.with_array(denormalize(values, intensity_range), spacing=spacing,
                                 origin=origin, series_description=label + suffix,
                                 series_uid="", source_paths=[])

    return VolumeSR(
        volume=as_volume(total),
        directions={name: as_volume(values, f" {name}") for name, values in directions.items()},
        intensity_range=intensity_range,
        tiles_per_image=max(len(s.tiles) if s.tiles else 1 for s, _ in streamers),
        batches=sum(s.batches(count) for s, count in streamers),
    )
