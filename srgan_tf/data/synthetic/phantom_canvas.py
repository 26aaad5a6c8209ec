"""Painting primitives of the pelvis phantom (`srgan_tf.data.synthetic.phantom`).

Band-limited random fields on a voxel grid, antialiased ellipsoids and tubes in the anatomical
frame, and the `Canvas` that blends them, region by region, into one volume.
"""
import math

import numpy as np


def random_field(rng, shape, step, sigma):
    """A smooth unit-variance Gaussian random field on a voxel grid.

    White noise on a coarse lattice (every `step` voxels) is spread by separable Gaussian
    kernels of width `sigma` voxels: banded matrix products, cheaper than a 3-D filter.
    """
    factors = []
    for size in shape:
        margin = int(math.ceil(3 * sigma / step))
        nodes = np.arange(-margin, int(math.ceil((size - 1) / step)) + margin + 1) * step
        weights = np.exp(-0.5 * ((np.arange(size)[:, None] - nodes[None, :]) / sigma) ** 2)
        weights[weights < 1e-4] = 0.0
        weights /= np.sqrt((weights ** 2).sum(axis=1, keepdims=True))  # unit variance per voxel
        factors.append(weights.astype(np.float32))
    field = rng.standard_normal(tuple(f.shape[1] for f in factors), dtype=np.float32)
    field = _spread(factors[2], field, 2)
    rows_first = np.ascontiguousarray(np.swapaxes(field, 0, 1))
    field = np.ascontiguousarray(np.swapaxes(_spread(factors[1], rows_first, 0), 0, 1))
    return _spread(factors[0], field, 0)  # the largest output (along slices) comes last


def _spread(weights, array, axis, chunk=16):
    """`weights` (out, nodes) applied along `axis` (0 or 2) of `array`, chunk by chunk."""
    shape = list(array.shape)
    shape[axis] = weights.shape[0]
    out = np.empty(shape, np.float32)
    for start in range(0, weights.shape[0], chunk):
        block = weights[start:start + chunk]
        used = np.flatnonzero(block.any(axis=0))
        block, lo, hi = block[:, used[0]:used[-1] + 1], used[0], used[-1] + 1
        if axis == 0:  # written in place: no temporary the size of the output
            np.matmul(block, array[lo:hi].reshape(hi - lo, -1),
                      out=out[start:start + chunk].reshape(len(block), -1))
        else:
            out[..., start:start + chunk] = array[..., lo:hi] @ block.T
    return out


def blob(block, centre, semi, *, edge, angle=0.0, power=2.0, wobble=None):
    """Antialiased membership (0..1) of an ellipsoid, or of a tube along w when semi[2] is None.

    `centre` and `semi` entries may be arrays broadcastable to the block (shapes that change
    along w). `power` > 2 squares the in-plane section (superellipse); `wobble` is a list of
    (order, amplitude, phase) that makes the outline irregular. `edge` is the ramp width (mm).
    """
    du, dv, dw = _offsets(block, centre, angle)
    return _membership(du, dv, dw, semi, edge, power, _bound(du, dv, semi, wobble))


def _offsets(block, centre, angle):
    """Block coordinates relative to `centre`, rotated by `angle` in the (u, v) plane."""
    w, u, v = block
    (cu, cv, cw) = centre
    du, dv = u - np.float32(cu), v - np.float32(cv)
    if angle:
        cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        du, dv = cos * du + sin * dv, cos * dv - sin * du
    return du, dv, w - np.float32(cw)


def _bound(du, dv, semi, wobble):
    """Outline radius (1 = the plain ellipse) as a function of the polar angle."""
    if not wobble:
        return 1.0
    theta = np.arctan2(dv / np.float32(np.mean(semi[1])), du / np.float32(np.mean(semi[0])))
    bound = np.ones_like(theta)
    for order, amplitude, phase in wobble:
        bound += np.float32(amplitude) * np.cos(order * theta + np.float32(phase))
    return bound


def _membership(du, dv, dw, semi, edge, power, bound):
    """Antialiased inside-ness: signed distance to the outline, (bound - rho) / |grad rho|."""
    a, b, c = (None if s is None else np.float32(s) if np.isscalar(s) else s for s in semi)
    x, y = du / a, dv / b
    if power == 2:
        r2 = x * x
        r2 += y * y
    else:
        r2 = (np.abs(x) ** power + np.abs(y) ** power) ** np.float32(2 / power)
    x /= a
    y /= b
    g2 = x * x
    g2 += y * y
    if c is not None:
        t = dw / c
        r2 = r2 + t * t
        g2 = g2 + (t / c) ** 2
    rho = np.sqrt(r2, out=r2)
    g2 += np.float32(1e-12)
    dist = (bound - rho) * rho
    dist /= np.sqrt(g2, out=g2)
    dist *= np.float32(1.0 / edge)
    dist += np.float32(0.5)
    return np.clip(dist, 0.0, 1.0, out=dist)


def wobble(rng, amplitude, orders=(2, 3, 4, 5)):
    """Random (order, amplitude, phase) terms for `blob`, amplitude falling with the order."""
    return [(m, amplitude * rng.normal() * 2.0 / m, rng.uniform(0, 2 * np.pi)) for m in orders]


def _support(membership):
    """Per-axis slices around the non-zero part of `membership`; None when it is empty."""
    inside = membership > 0
    tight = []
    for axis in range(3):
        if membership.shape[axis] == 1:
            tight.append(slice(None))
            continue
        hits = np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))
        if not len(hits):
            return None
        tight.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(tight)


def _crop(array, tight):
    """`array` (broadcastable to the block) restricted to the `tight` slices."""
    if np.ndim(array) < 3:
        return array
    return array[tuple(part if size > 1 else slice(None)
                       for part, size in zip(tight, array.shape))]


class Canvas:
    """The image being painted: grid coordinates in the anatomical frame plus texture fields.

    Args:
        x, y, z: 1-D LPS coordinates (mm) of the columns, rows and slices of the grid.
        centre: LPS position (mm) of the prostate centre, the origin of the anatomical frame.
        angle: in-plane rotation (radians) of the patient on the table.
        rng: numpy Generator for the texture fields.
    """

    def __init__(self, x, y, z, centre, angle, rng, warp=2.5):
        dx = (np.asarray(x, np.float32) - centre[0])[None, :]
        dy = (np.asarray(y, np.float32) - centre[1])[:, None]
        self.plane_u = (math.cos(angle) * dx + math.sin(angle) * dy).astype(np.float32)
        self.plane_v = (math.cos(angle) * dy - math.sin(angle) * dx).astype(np.float32)
        self.w = (np.asarray(z, np.float32) - centre[2]).astype(np.float32)
        self.voxel = float(abs(x[1] - x[0])) if len(x) > 1 else 1.0
        self.edge = self.voxel
        shape = (len(z), len(y), len(x))
        self.image = np.zeros(shape, np.float32)
        step = lambda mm: max(1.0, mm / self.voxel)  # noqa: E731 - field scales in voxels
        # A smooth in-plane deformation makes every ellipse an organic outline.
        self.u, self.v = (np.clip(field, -3, 3, out=field) for field in
                          (random_field(rng, shape, step(14.0), step(12.0)) for _ in range(2)))
        self.u *= warp
        self.u += self.plane_u
        self.v *= warp
        self.v += self.plane_v
        self.reach = 3.0 * warp  # how far the deformation may move a point
        self.fine = random_field(rng, shape, step(0.9), step(0.8))
        self.medium = random_field(rng, shape, step(3.0), step(2.6))
        self.coarse = random_field(rng, shape, step(8.0), step(7.0))

    def region(self, u_range, v_range, w_range, flat=False):
        """(index, (w, u, v) coordinate block) of a box in the anatomical frame, or None.

        With `flat`, u and v are the undeformed 2-D plane coordinates (shape (1, rows, cols)).
        """
        ks = np.flatnonzero((self.w >= w_range[0]) & (self.w <= w_range[1]))
        r = 0.0 if flat else self.reach
        inside = ((self.plane_u >= u_range[0] - r) & (self.plane_u <= u_range[1] + r)
                  & (self.plane_v >= v_range[0] - r) & (self.plane_v <= v_range[1] + r))
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        if not (len(ks) and len(rows) and len(cols)):
            return None
        index = (slice(ks[0], ks[-1] + 1), slice(rows[0], rows[-1] + 1),
                 slice(cols[0], cols[-1] + 1))
        if flat:
            return index, (self.w[index[0], None, None], self.plane_u[index[1:]][None],
                           self.plane_v[index[1:]][None])
        return index, (self.w[index[0], None, None], self.u[index], self.v[index])

    def paint(self, index, membership, value):
        """Blend `value` (scalar or array over the region) in with weight `membership`."""
        region = self.image[index]
        region += membership * (value - region)

    def layers(self, values, centre, semi, insets=(0.0,), *, reach=None, around=None,
               w_range=None, within=None, flat=False, angle=0.0, power=2.0, wobble=None):
        """Paint nested blobs, outermost first, each `inset` mm (increasing) inside the outline.

        `values[i]` (scalar or callable of the region index) fills layer i. Callable centre or
        semi entries are functions of w (shapes that change along the slice axis); they need
        `around` (u, v), `reach` (mm, or (u, v) half extents) and `w_range`. `within` is a
        full-grid mask that clips the blobs; `flat` evaluates an undeformed tube (cheap, 2-D).
        Returns (index, memberships) or None when the shape misses the grid.
        """
        cu, cv = around if around is not None else centre[:2]
        if reach is None:  # half extents of the rotated outline, with room for the wobble
            cos, sin = math.cos(angle), math.sin(angle)
            reach = (1.2 * math.hypot(semi[0] * cos, semi[1] * sin),
                     1.2 * math.hypot(semi[0] * sin, semi[1] * cos))
        reach_u, reach_v = (reach, reach) if np.isscalar(reach) else reach
        reach_u, reach_v = reach_u + 2 * self.edge, reach_v + 2 * self.edge
        if w_range is None:
            w_range = (centre[2] - semi[2] - self.edge, centre[2] + semi[2] + self.edge)
        found = self.region((cu - reach_u, cu + reach_u), (cv - reach_v, cv + reach_v), w_range,
                            flat)
        if found is None:
            return None
        index, block = found
        centre = tuple(c(block[0]) if callable(c) else c for c in centre)
        semi = tuple(s(block[0]) if callable(s) else s for s in semi)
        du, dv, dw = _offsets(block, centre, angle)
        bound = _bound(du, dv, semi, wobble)
        memberships = []
        for layer, (value, inset) in enumerate(zip(values, insets)):
            inner = tuple(None if s is None else np.maximum(s - inset, 1e-3) for s in semi)
            membership = _membership(du, dv, dw, inner, self.edge, power, bound)
            if layer == 0:  # the other layers lie inside the first: keep only its support
                tight = _support(membership)
                if tight is None:
                    return None
                membership, du, dv, dw, bound = (_crop(array, tight) for array in
                                                 (membership, du, dv, dw, bound))
                semi = tuple(_crop(s, tight) for s in semi)
                index = tuple(slice(outer.start + part.start, outer.start + part.stop)
                              if part != slice(None) else outer
                              for outer, part in zip(index, tight))
            if within is not None:
                membership *= within[index]
            self.paint(index, membership, value(index) if callable(value) else value)
            memberships.append(membership)
        return index, memberships

    def shape(self, value, centre, semi, **options):
        """Paint one blob (see `layers`); returns (index, membership) or None."""
        found = self.layers((value,), centre, semi, **options)
        return None if found is None else (found[0], found[1][0])

    def mask(self, found):
        """A full-grid membership volume from an (index, membership) pair (for `within=`)."""
        volume = np.zeros(self.image.shape, np.float32)
        if found is not None:
            volume[found[0]] = found[1]
        return volume

    def textured(self, level, fine=0.0, medium=0.0):
        """A value callable: `level` modulated by the texture fields inside each region."""
        return lambda index: level * (1.0 + fine * self.fine[index] + medium * self.medium[index])

    def septa(self, index, offset=0.0, width=0.07):
        """0..1 thin sheets where the coarse field crosses `offset` (fibrous septa, fat streaks)."""
        sheet = self.coarse[index] - np.float32(offset)
        np.abs(sheet, out=sheet)
        sheet *= np.float32(-1.0 / width)
        sheet += np.float32(1.0)
        return np.clip(sheet, 0.0, 1.0, out=sheet)
