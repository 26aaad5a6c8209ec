"""Comparison figures (HR | LR | bicubic | SR ... with a zoomed inset and an error map), the
loss curve of a training's history.csv, and the slice-profile estimate's fit.

Built on matplotlib's object API with the Agg canvas (no pyplot, no global backend state), so
figures can be written from training callbacks and converted to arrays for TensorBoard.
"""
import csv
from pathlib import Path
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

PANEL_INCHES = 2.4
INSET_COLOR = "#ffd400"


def nearest_upsample(image, shape):
    """Blow `image` up to `shape` by pixel repetition, so LR keeps its blocky look per axis.

    Exp. 2's LR (rows / s, cols) becomes horizontal bands, like the paper's Fig. 3.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape == tuple(shape):
        return image
    rows, cols = shape
    if rows % image.shape[0] == 0 and cols % image.shape[1] == 0:
        return np.repeat(np.repeat(image, rows // image.shape[0], 0), cols // image.shape[1], 1)
    return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_NEAREST)


def edge_rich_box(hr, size=None) -> Tuple[int, int, int, int]:
    """The square window with the largest HR gradient energy, as (row, col, height, width).

    Args:
        hr: 2-D reference image.
        size: window side in pixels; default a quarter of the shorter image side (>= 8).
    """
    hr = np.asarray(hr, dtype=np.float32)
    size = int(size or max(8, min(hr.shape) // 4))
    size = min(size, *hr.shape)
    dy, dx = np.gradient(hr)
    energy = (dx**2 + dy**2).astype(np.float64)
    margin = min(4, (min(hr.shape) - size) // 2)  # crop borders make artificial edges
    if margin > 0:
        energy[:margin], energy[-margin:], energy[:, :margin], energy[:, -margin:] = 0, 0, 0, 0
    # Integral image: every window's energy in one pass.
    table = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (table[size:, size:] - table[:-size, size:] - table[size:, :-size]
            + table[:-size, :-size])
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(row), int(col), size, size


def figure_to_array(figure: Figure) -> np.ndarray:
    """Render a matplotlib figure to an RGB uint8 array (H, W, 3), e.g. for tf.summary.image."""
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def comparison_figure(panels: Sequence[Tuple[str, np.ndarray]], zoom_box=None,
                      error_map_of=None) -> Figure:
    """Top row: the images (and error maps); bottom row: the same zoomed on one region.

    Args:
        panels: (title, 2-D image in [-1, 1]) pairs; the first is the HR reference. Panels of
            another shape (LR) are shown nearest-upsampled to the HR shape.
        zoom_box: (row, col, height, width) in HR pixels; default `edge_rich_box(hr)`.
        error_map_of: title or list of titles whose |image - HR| is shown too; default the
            last panel. Pass [] for none.
    """
    if len(panels) < 2:
        raise ValueError(f"Expected the HR panel and at least one other. Received: {len(panels)} panels")
    hr = np.asarray(panels[0][1], dtype=np.float32)
    if hr.ndim != 2:
        raise ValueError(f"Expected 2-D images. Received: HR shape {hr.shape}")
    shown = [(title, nearest_upsample(np.squeeze(image), hr.shape)) for title, image in panels]
    if error_map_of is None:
        error_map_of = [panels[-1][0]]
    elif isinstance(error_map_of, str):
        error_map_of = [error_map_of]
    images = dict(shown)
    unknown = [title for title in error_map_of if title not in images]
    if unknown:
        raise ValueError(f"error_map_of must name panels {list(images)}. Received: {unknown}")
    errors = [(f"|{title} - {panels[0][0]}|", np.abs(images[title] - hr)) for title in error_map_of]
    error_max = max([float(np.percentile(e, 99.5)) for _, e in errors] + [1e-3])
    row, col, height, width = zoom_box or edge_rich_box(hr)
    window = (slice(row, row + height), slice(col, col + width))

    columns = len(shown) + len(errors)
    aspect = hr.shape[0] / hr.shape[1]
    figure = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * (aspect + 1) + 0.4), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, columns, squeeze=False,
                           gridspec_kw={"height_ratios": [aspect, 1.0]})
    for index, (title, image) in enumerate(shown + errors):
        is_error = index >= len(shown)
        style = (dict(cmap="magma", vmin=0.0, vmax=error_max) if is_error
                 else dict(cmap="gray", vmin=-1.0, vmax=1.0))
        top, bottom = grid[0, index], grid[1, index]
        top.imshow(image, interpolation="nearest", **style)
        top.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False,
                                edgecolor=INSET_COLOR, linewidth=1.0))
        top.set_title(title, fontsize=9)
        bottom.imshow(image[window], interpolation="nearest", **style)
        for axes in (top, bottom):
            axes.set_xticks([])
            axes.set_yticks([])
        for spine in bottom.spines.values():
            spine.set_edgecolor(INSET_COLOR)
    figure.tight_layout()
    return figure


def save_comparison_figure(path: Optional[str], panels, zoom_box=None,
                           error_map_of=None) -> np.ndarray:
    """Write `comparison_figure(...)` as PNG (if `path`) and return it as RGB uint8.

    Example:
        >>> rgb = save_comparison_figure("figures/slice0.png",
        ...     [("HR", hr), ("LR", lr), ("Bicubic", bicubic), ("SRGAN", sr)])
    """
    figure = comparison_figure(panels, zoom_box=zoom_box, error_map_of=error_map_of)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(str(path), dpi=100)
    return figure_to_array(figure)


LOSS_CURVE_KEYS = ("pixel_mse", "val_pixel_mse", "g_loss", "val_g_loss")


def save_loss_curve(history_csv, path) -> bool:
    """Write the losses of a Keras `history.csv` per epoch (log scale) as PNG; False when the
    history has no rows (nothing written)."""
    with open(history_csv) as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        return False
    epochs = [float(row.get("epoch", i)) for i, row in enumerate(rows)]
    figure = Figure(figsize=(5, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 1)
    for key in LOSS_CURVE_KEYS:
        values = [float(row[key]) for row in rows if row.get(key) not in (None, "")]
        if len(values) == len(rows):  # a key of one phase only is left out
            axes.plot(epochs, values, marker="o", label=key)
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_title("training loss")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(str(path), dpi=100)
    return True


def save_profile_estimate(estimate, path) -> None:
    """Write the slice-profile estimate (`data.degradation.profile_estimate.ProfileEstimate`) as
    a two-panel PNG: residual against width per shape (the choice marked), and the observed
    through-plane spectrum against the chosen candidate's fitted one."""
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for shape in estimate.widths_mm:
        left.plot(estimate.widths_mm[shape], estimate.scores[shape], label=shape)
    left.plot([estimate.profile.fwhm_mm], [min(estimate.scores[estimate.profile.shape])], "ko",
              label=f"chosen: {estimate.profile.describe()}")
    left.axvline(estimate.slice_mm, color="grey", linestyle=":", label="slice spacing")
    left.set(xlabel="width (box) / FWHM (gaussian), mm", ylabel="log-spectrum residual (RMS)",
             title="Slice profile candidates")
    left.legend(fontsize=8)
    right.semilogy(estimate.frequencies, estimate.observed, "k.-", label="through-plane (observed)")
    right.semilogy(estimate.frequencies, estimate.fitted, "r-", label="in-plane, thickened (fitted)")
    right.set(xlabel="cycles / mm", ylabel="power", title="Spectra in the fitted band")
    right.legend(fontsize=8)
    figure.suptitle(estimate.reason, fontsize=8)
    figure.tight_layout()
    figure.savefig(str(path), dpi=100)
