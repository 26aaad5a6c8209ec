"""Overlapping tiles for images too large to super-resolve in one piece, without seams.

Strategy: crop-the-centre. Each tile is the core region plus a margin of LR pixels on every
side that has a neighbour; only the core's output is kept. With a margin at least the
generator's receptive-field radius (stored in the export's metadata), every kept output pixel
sees exactly the LR pixels it sees in the untiled image, so the tiled output equals the
untiled one up to float rounding; no blending is needed.
"""
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

# Live float32 tensors per HR pixel and feature channel at the widest stage (conv input,
# pre-shuffle output, shuffled output, framework scratch): a generous rule of thumb.
_LIVE_TENSORS_PER_HR_PIXEL = 4
_BYTES_PER_VALUE = 4


@dataclass(frozen=True)
class Tile:
    """One tile: the LR region fed to the model and the HR region of its output that is kept.

    Args:
        source: (rows, cols) slices of the LR image given to the model (core plus margins).
        keep: (rows, cols) slices of the tile's HR output that are kept (the core).
        target: (rows, cols) slices of the full HR output the kept part is written to.
    """

    source: Tuple[slice, slice]
    keep: Tuple[slice, slice]
    target: Tuple[slice, slice]


def estimate_bytes(shape_hw: Sequence[int], scale_hw: Sequence[int], filters: int) -> int:
    """Rough peak activation memory (bytes) of one generator pass on one LR image.

    Args:
        shape_hw: LR image (height, width).
        scale_hw: upsampling factor per axis.
        filters: feature channels of the generator (64 in the paper).
    """
    hr_pixels = shape_hw[0] * scale_hw[0] * shape_hw[1] * scale_hw[1]
    return int(hr_pixels * filters * _LIVE_TENSORS_PER_HR_PIXEL * _BYTES_PER_VALUE)


def plan_axis(size: int, tile: int, margin: int) -> List[Tuple[int, int, int, int]]:
    """Split one axis of `size` LR pixels into cores of at most `tile` pixels.

    Returns:
        (source_start, source_stop, core_start, core_stop) per tile, LR pixel indices; the
        source is the core widened by `margin` on each side, clipped to the image.
    """
    if size < 1 or tile < 1 or margin < 0:
        raise ValueError(f"Expected size >= 1, tile >= 1, margin >= 0. "
                         f"Received: size={size}, tile={tile}, margin={margin}")
    count = math.ceil(size / tile)
    core = math.ceil(size / count)  # equal-sized cores: no sliver tile at the end
    plan = []
    for start in range(0, size, core):
        stop = min(start + core, size)
        plan.append((max(0, start - margin), min(size, stop + margin), start, stop))
    return plan


def plan_tiles(shape_hw: Sequence[int], tile_hw: Sequence[int], margin_hw: Sequence[int],
               scale_hw: Sequence[int]) -> List[Tile]:
    """Tiles covering an LR image of `shape_hw` with cores of at most `tile_hw` pixels.

    Example:
        >>> tiles = plan_tiles((26, 384), (26, 128), (40, 44), (8, 1))  # 3 tiles along width
    """
    per_axis = [plan_axis(shape_hw[axis], tile_hw[axis], margin_hw[axis]) for axis in (0, 1)]
    tiles = []
    for rows in per_axis[0]:
        for cols in per_axis[1]:
            source, keep, target = [], [], []
            for (src_lo, src_hi, core_lo, core_hi), scale in zip((rows, cols), scale_hw):
                source.append(slice(src_lo, src_hi))
                keep.append(slice((core_lo - src_lo) * scale, (core_hi - src_lo) * scale))
                target.append(slice(core_lo * scale, core_hi * scale))
            tiles.append(Tile(tuple(source), tuple(keep), tuple(target)))
    return tiles


def choose_tiling(shape_hw: Sequence[int], scale_hw: Sequence[int], filters: int,
                  budget_bytes: int, margin_hw: Sequence[int],
                  tile_axes: Sequence[int] = (0, 1)) -> Optional[Tuple[int, int]]:
    """Core tile size (height, width) that keeps one image pass under `budget_bytes`.

    Returns None when the whole image fits. The largest of the `tile_axes` is halved until
    the tile fits (through-plane images pass (1,): width only, the short slice axis is
    split only if that is not enough). Cores stay at least one margin wide (more tiles would
    cost more in margins than they save), so a tiny budget may be exceeded.
    """
    if estimate_bytes(shape_hw, scale_hw, filters) <= budget_bytes:
        return None
    tile = list(shape_hw)

    def cost():
        padded = [min(shape_hw[axis], tile[axis] + 2 * margin_hw[axis]) for axis in (0, 1)]
        return estimate_bytes(padded, scale_hw, filters)

    for axes in (tuple(tile_axes), (0, 1)):
        while cost() > budget_bytes:
            candidates = [axis for axis in axes if tile[axis] // 2 >= max(1, margin_hw[axis])]
            if not candidates:
                break
            axis = max(candidates, key=lambda a: tile[a])
            tile[axis] //= 2
    return None if list(tile) == list(shape_hw) else (tile[0], tile[1])


def predict_tiled(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                  scale_hw: Sequence[int], tiles: List[Tile],
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Super-resolve NHWC `images` tile by tile into `out` (allocated if None).

    Args:
        predict: maps an NHWC float32 batch to its NHWC super-resolved batch.
        images: (batch, height, width, 1) float32 LR images.
        scale_hw: the model's factor per axis.
        tiles: from `plan_tiles` for this image size.
        out: optional (batch, height*sh, width*sw, 1) float32 destination.
    """
    batch, height, width, channels = images.shape
    if out is None:
        out = np.empty((batch, height * scale_hw[0], width * scale_hw[1], channels), np.float32)
    for tile in tiles:
        piece = np.ascontiguousarray(images[:, tile.source[0], tile.source[1], :])
        result = predict(piece)
        out[:, tile.target[0], tile.target[1], :] = result[:, tile.keep[0], tile.keep[1], :]
    return out
