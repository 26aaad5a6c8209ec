"""tf.data pipelines of (lr, hr) batches from the HDF5 slice cache (Exp. 1 iso, Exp. 2 aniso).

What a network sees, in order:

1. candidates: every axial slice of the split's series, in cache order (series, slice index);
2. order: training: a fresh permutation of all candidates per epoch (stateless, from `seed` and
   the epoch number: a full shuffle, no shuffle buffer needed); evaluation: cache order, once;
3. HR slice: normalised to [-1, 1] per volume, then `prepare_slices`: the centred
   hr_size x hr_size crop (paper: "cropped to 224x224"); a slice smaller than hr_size on
   either side gives its largest centred square, upsampled bicubically to hr_size;
4. foreground: slices with fewer than `min_foreground` of their voxels above -0.9 are skipped;
5. training only: a random `patch_size` patch and random up-down / left-right flips, drawn
   statelessly from (seed, element number) (`augment.random_patch_and_flips`);
6. batches of `batch_size` (dropped remainder when training), LR = `lr_images(hr, config)`:
   `degrade(hr, scale_hw)` (bicubic), or for aniso `degradation="slice-profile"` thick slices
   along the height (`slice_profile_degrade`, the Exp. 3 input model).

The slices are held in memory when hr_size slices of all candidates fit `memory_budget_mb`
(one array shared with TensorFlow without a copy; `experimental_distribute_dataset` rewrites
the pipeline and copies it once, `distribute_datasets_from_function` does not); otherwise they
are streamed from HDF5, one slice read at a time, over parallel interleaved readers. Both
modes deliver the same elements in the same order for the same seed.
"""
import logging
import math
from typing import NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf

from srgan_tf.data.pipelines.augment import augment_draws, element_draws, random_patch_and_flips
from srgan_tf.data.slice_cache.cache import SliceCache
from srgan_tf.data.degradation.degrade import degrade, slice_profile_degrade
from srgan_tf.data.intensity import FOREGROUND_LEVEL
from srgan_tf.data.degradation.slice_profile import SliceProfile

log = logging.getLogger("srgan_tf")

STREAM_READERS = 4  # parallel HDF5 readers when streaming
SPLITS = ("train", "test")


class Candidates(NamedTuple):
    """Every slice of a split: candidate c is slice `index[c]` of series `keys[series[c]]`."""

    keys: Tuple[str, ...]
    series: np.ndarray
    index: np.ndarray

    @property
    def count(self) -> int:
        return int(self.series.size)


def make_dataset(cache_path, data_config, split: str = "train", training: bool = True,
                 seed: int = 0) -> tf.data.Dataset:
    """`(lr, hr)` batches for Exp. 1 / Exp. 2: lr [B, S/sh, S/sw, 1], hr [B, S, S, 1] in [-1, 1].

    S is `data_config.train_size` when training, `hr_size` otherwise (whole slices).

    Args:
        cache_path: HDF5 slice cache (`srgan-tf prepare`).
        data_config: `DataConfig`; `batch_size` is the batch this dataset yields (pass the
            global batch when distributing with `strategy.experimental_distribute_dataset`).
        split: "train" or "test".
        training: True: endless, reshuffled every epoch, patches and flips, static batch
            shape. False: one pass in cache order, whole slices, last batch kept.
        seed: the same seed gives the same batches, in memory or streamed.

    Example:
        dataset = make_dataset("cache.h5", config.data, seed=config.train.seed)
    """
    _check_arguments(data_config, split)
    candidates = list_candidates(cache_path, split)
    hr_size = data_config.hr_size
    nbytes = candidates.count * hr_size * hr_size * 4
    in_memory = nbytes <= data_config.memory_budget_mb * 2**20
    order = _candidate_order(candidates.count, training, seed)
    if in_memory:
        slices, rows = _load_slices(cache_path, candidates, data_config)
        log.info("pipeline: %d %s slices in memory (%.0f MB)", len(slices), split,
                 slices.nbytes / 2**20)
        usable = len(slices) > 0
        hr = _from_memory(order, slices, rows)
    else:
        log.info("pipeline: streaming %d candidate %s slices from %s", candidates.count, split,
                 cache_path)
        usable = not training or _any_foreground(cache_path, candidates, data_config)
        hr = _from_stream(order, cache_path, candidates, data_config)
    if training and not usable:  # an endless dataset with no elements would hang the caller
        raise ValueError(f"{cache_path}: no slice of split {split!r} has "
                         f"{data_config.min_foreground:.0%} of its voxels above "
                         f"{FOREGROUND_LEVEL}. "
                         f"Received: {candidates.count} slices, "
                         f"min_foreground={data_config.min_foreground}")
    if training:
        hr = hr.enumerate().map(_augmenter(data_config, seed), num_parallel_calls=tf.data.AUTOTUNE,
                                deterministic=True)
    batches = hr.batch(data_config.batch_size, drop_remainder=training)
    pairs = batches.map(lambda hr_batch: (lr_images(hr_batch, data_config), hr_batch),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return pairs.prefetch(tf.data.AUTOTUNE).with_options(_options(rewrite=not in_memory))


def validation_batch(cache_path, data_config, count: Optional[int] = None,
                     split: str = "test") -> Tuple[np.ndarray, np.ndarray]:
    """Fixed `(lr, hr)` numpy slices for image panels and figures.

    Series of the split are used in cache order, round robin (the train split if the split
    is empty); within a series, the picks are evenly spaced over its foreground slices
    (one pick: the middle one). Same cache and config, same slices.

    Args:
        count: number of slices; default `data_config.val_slices`.
    """
    _check_arguments(data_config, split)
    count = data_config.val_slices if count is None else int(count)
    if count < 1:
        raise ValueError(f"count must be >= 1. Received: count={count}")
    keys = list_candidates(cache_path, split).keys or list_candidates(cache_path, "train").keys
    if not keys:
        raise ValueError(f"The cache has no series. Received: {cache_path}")
    picks = []
    with SliceCache(cache_path) as cache:
        for position, key in enumerate(keys[:count]):
            picks_here = len(range(position, count, len(keys)))
            hr = prepare_slices(cache.read_normalized(key), data_config.hr_size).numpy()
            keep = np.flatnonzero(foreground(hr, data_config.min_foreground).numpy())
            keep = keep if keep.size else np.arange(len(hr))
            spots = [keep[(len(keep) * (k + 1)) // (picks_here + 1)] for k in range(picks_here)]
            picks.append(hr[spots])
    # Round robin: validation image j is pick j // n of series j % n.
    hr = np.stack([picks[j % len(picks)][j // len(picks)] for j in range(count)])
    return lr_images(hr, data_config).numpy(), hr


def lr_images(hr, data_config) -> tf.Tensor:
    """The LR a network is trained and validated on, from HR [N, H, W, 1] (or HWC) in [-1, 1].

    iso, or aniso with `degradation="bicubic"` (the paper): `degrade(hr, scale_hw)`.
    aniso with `degradation="slice-profile"`: thick slices along the height, as through-plane
    images of an acquired volume are: `slice_profile_degrade(hr, axis=-3, scale,
    SliceProfile(slice_profile, slice_thickness_ratio * scale))` (width in HR rows), with
    degrade's sampling phase and borders.
    """
    if data_config.mode == "aniso" and data_config.degradation == "slice-profile":
        thickness = data_config.slice_thickness_ratio * data_config.scale  # in HR rows
        return slice_profile_degrade(tf.convert_to_tensor(hr, tf.float32), axis=-3,
                                     factor=data_config.scale,
                                     profile=SliceProfile(data_config.slice_profile, thickness))
    return degrade(hr, data_config.scale_hw)


def describe_lr(data_config) -> str:
    """`lr_images`' rule for `data_config` in words (metrics.json protocols, reports)."""
    if data_config.mode == "aniso" and data_config.degradation == "slice-profile":
        return (f"thick slices along the height: {data_config.slice_profile} slice profile, "
                f"thickness {data_config.slice_thickness_ratio:g} x the spacing of x"
                f"{data_config.scale} (srgan_tf.data.degradation.degrade.slice_profile_degrade)")
    return "antialiased bicubic downsampling (srgan_tf.data.degradation.degrade.degrade)"


def list_candidates(cache_path, split: str) -> Candidates:
    """Every slice of the split's series, in cache order."""
    with SliceCache(cache_path) as cache:
        series = cache.series(split)
    sizes = [int(info.shape[0]) for info in series]
    index = [np.arange(n, dtype=np.int64) for n in sizes] or [np.zeros(0, np.int64)]
    series_of = np.repeat(np.arange(len(series), dtype=np.int64), sizes)
    return Candidates(tuple(info.key for info in series), series_of, np.concatenate(index))


def prepare_slices(slices, hr_size: int) -> tf.Tensor:
    """[S, H, W] (or [S, H, W, 1]) normalised slices -> [S, hr_size, hr_size, 1] float32.

    The centred crop of side min(H, W, hr_size); if that side is below hr_size (a small
    slice), the crop is upsampled with `tf.image.resize(method="bicubic")` and clipped to
    [-1, 1]. The same ops whether one slice or a whole volume is prepared.
    """
    x = tf.convert_to_tensor(slices, tf.float32)
    if x.shape.rank == 3:
        x = x[..., None]
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    side = tf.minimum(tf.minimum(height, width), hr_size)
    top, left = (height - side) // 2, (width - side) // 2
    crop = x[:, top:top + side, left:left + side, :]
    def upsampled():
        resized = tf.image.resize(crop, [hr_size, hr_size], method="bicubic")
        return tf.clip_by_value(resized, -1.0, 1.0)

    return tf.ensure_shape(tf.cond(side < hr_size, upsampled, lambda: crop),
                           [None, hr_size, hr_size, 1])


def foreground(hr, min_foreground: float) -> tf.Tensor:
    """bool [S]: slices with at least `min_foreground` of their voxels above -0.9."""
    hr = tf.convert_to_tensor(hr, tf.float32)
    pixels = hr.shape[1] * hr.shape[2] * hr.shape[3]
    needed = math.ceil(min_foreground * pixels - 1e-9)
    return tf.reduce_sum(tf.cast(hr > FOREGROUND_LEVEL, tf.int32), axis=[1, 2, 3]) >= needed


def _candidate_order(count: int, training: bool, seed: int) -> tf.data.Dataset:
    """One candidate-id vector per epoch: endless permutations, or cache order once."""
    if not training:
        return tf.data.Dataset.from_tensors(tf.range(count, dtype=tf.int64))
    ids = tf.range(count, dtype=tf.int64)
    return tf.data.Dataset.counter().map(
        lambda epoch: tf.random.experimental.stateless_shuffle(
            ids, seed=tf.stack([tf.constant(2 * seed, tf.int64), epoch]), alg="philox"))


def _load_slices(cache_path, candidates: Candidates, data_config):
    """All foreground HR slices, prepared, in one array; rows[c] = its row or -1 (skipped)."""
    hr_size = data_config.hr_size
    slices = _aligned_empty((candidates.count, hr_size, hr_size, 1))
    rows = np.full(candidates.count, -1, np.int64)
    kept = 0
    with SliceCache(cache_path) as cache:
        for position, key in enumerate(candidates.keys):
            hr = prepare_slices(cache.read_normalized(key), hr_size)
            keep = foreground(hr, data_config.min_foreground).numpy()
            first = int(np.searchsorted(candidates.series, position))
            rows[first + np.flatnonzero(keep)] = kept + np.arange(int(keep.sum()))
            slices[kept:kept + int(keep.sum())] = hr.numpy()[keep]
            kept += int(keep.sum())
    return slices[:kept], rows


def _any_foreground(cache_path, candidates: Candidates, data_config) -> bool:
    """Whether any slice passes the foreground filter; middle slices first (usually one read)."""
    middles = [int(np.median(np.flatnonzero(candidates.series == position)))
               for position in range(len(candidates.keys))]
    order = middles + list(range(candidates.count))
    with SliceCache(cache_path) as cache:
        for candidate in order:
            raw = _read_normalized_slice(cache, candidates.keys[candidates.series[candidate]],
                                         int(candidates.index[candidate]))
            hr = prepare_slices(raw[None], data_config.hr_size)
            if bool(foreground(hr, data_config.min_foreground)[0]):
                return True
    return False


def _aligned_empty(shape) -> np.ndarray:
    """float32 array on a 64-byte boundary, so TensorFlow can use its memory without a copy."""
    nbytes = int(np.prod(shape)) * 4
    raw = np.empty(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + nbytes].view(np.float32).reshape(shape)


def _as_tensor(array: np.ndarray) -> tf.Tensor:
    """The array as a tensor sharing its memory (DLPack) when possible, else a copy."""
    if array.flags.c_contiguous and array.ctypes.data % 64 == 0 and array.size:
        try:
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except (AttributeError, TypeError, ValueError, tf.errors.OpError):
            pass
    return tf.convert_to_tensor(array)


def _from_memory(order: tf.data.Dataset, slices: np.ndarray, rows: np.ndarray) -> tf.data.Dataset:
    """Whole HR slices gathered from one in-memory tensor (no Python per element)."""
    slices, rows = _as_tensor(slices), tf.constant(rows)

    def epoch_rows(ids):
        picked = tf.gather(rows, ids)
        return tf.data.Dataset.from_tensor_slices(tf.boolean_mask(picked, picked >= 0))

    return order.flat_map(epoch_rows).map(lambda row: tf.gather(slices, row),
                                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _from_stream(order: tf.data.Dataset, cache_path, candidates: Candidates,
                 data_config) -> tf.data.Dataset:
    """Whole HR slices read one by one from HDF5 by STREAM_READERS interleaved generators.

    Reader r takes the epoch's candidates r, r + STREAM_READERS, ...; a round-robin
    interleave puts them back in epoch order, and the foreground filter comes after, so the
    sequence equals the in-memory one.
    """
    hr_size, min_foreground = data_config.hr_size, data_config.min_foreground
    keys, series, index = candidates
    path = str(cache_path)

    def read(ids):
        with SliceCache(path) as cache:
            for candidate in ids:
                yield _read_normalized_slice(cache, keys[series[candidate]], int(index[candidate]))

    def reader(ids, shard):
        return tf.data.Dataset.from_generator(
            read, args=(ids[shard::STREAM_READERS],),
            output_signature=tf.TensorSpec([None, None], tf.float32))

    def epoch_slices(ids):
        return tf.data.Dataset.range(STREAM_READERS).interleave(
            lambda shard: reader(ids, shard), cycle_length=STREAM_READERS, block_length=1,
            num_parallel_calls=STREAM_READERS, deterministic=True)

    def prepared(raw):
        hr = prepare_slices(raw[None], hr_size)
        return hr[0], foreground(hr, min_foreground)[0]

    def is_kept(hr, keep):
        return keep

    def image(hr, keep):
        return hr

    slices = order.flat_map(epoch_slices).map(prepared, num_parallel_calls=tf.data.AUTOTUNE,
                                              deterministic=True)
    return slices.filter(is_kept).map(image)


def _read_normalized_slice(cache, key: str, index: int) -> np.ndarray:
    """One [H, W] slice normalised to [-1, 1], read without loading the whole volume."""
    return np.asarray(cache.read_normalized(key, [index])[0], np.float32)


def _augmenter(data_config, seed: int):
    """(element number, hr) -> hr: random patch and flips drawn statelessly from (seed, number)
    (stream 2 * seed + 1; the epochs' shuffles use 2 * seed)."""
    patch, flips = data_config.train_size, data_config.flips

    def augment(number, hr):
        draws = element_draws(2 * seed + 1, number, augment_draws(transpose=False))
        return random_patch_and_flips(hr, draws, patch, flips=flips)

    return augment


def _options(rewrite: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # tf.data's default graph rewrites serialise the pipeline, copying in-memory slices again.
    options.experimental_optimization.apply_default_optimizations = rewrite
    # Elements come from one in-memory tensor or one file: shard by element, not by file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _check_arguments(data_config, split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}. Received: split={split!r}")
    if data_config.train_size > data_config.hr_size:
        raise ValueError(f"patch_size must not exceed hr_size. Received: patch_size="
                         f"{data_config.patch_size}, hr_size={data_config.hr_size}")
    scale_h, scale_w = data_config.scale_hw
    if data_config.train_size % scale_h or data_config.hr_size % scale_h:
        raise ValueError(f"hr_size and patch_size must be divisible by the scale. Received: "
                         f"hr_size={data_config.hr_size}, patch_size={data_config.patch_size}, "
                         f"scale_hw={(scale_h, scale_w)}")
