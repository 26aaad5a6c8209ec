"""A synthetic male pelvis as it appears on axial T2-weighted TSE MRI (noise-free, no bias).

Every organ is a continuous shape in an anatomical frame (mm; u: patient left, v: posterior,
w: superior, origin at the prostate centre), evaluated on the voxel centres of one grid, so
thick slices and an isotropic volume sampled from the same grid show the same anatomy.
Tissue texture comes from band-limited random fields on that grid.
The painting primitives (random fields, antialiased shapes, `Canvas`) are in
`srgan_tf.data.synthetic.phantom_canvas`.
"""
import numpy as np

from srgan_tf.data.synthetic.phantom_canvas import Canvas, blob, wobble

# Relative T2 TSE signal of each tissue before the patient's gain (scanner units).
_TISSUES = {
    "fat": 980.0, "muscle": 250.0, "cortex": 45.0, "marrow": 560.0, "cartilage": 380.0,
    "urine": 1450.0, "bladder_wall": 290.0, "rectal_wall": 270.0, "mucosa": 470.0,
    "stool": 430.0, "peripheral": 820.0, "transition": 470.0, "capsule": 210.0,
    "stroma": 230.0, "central": 330.0, "urethra": 720.0, "vesicle": 1150.0, "lesion": 380.0,
    "artery": 50.0, "vein": 850.0,
}


def tissue_levels(rng):
    """Per-patient tissue signal: a global gain times a small per-tissue spread."""
    gain = rng.uniform(0.85, 1.15)
    return {name: level * gain * rng.uniform(0.92, 1.08) for name, level in _TISSUES.items()}


def render_pelvis(x, y, z, centre, angle, rng):
    """Noise-free T2 signal of one random pelvis on the grid x (cols), y (rows), z (slices).

    Args:
        x, y, z: 1-D LPS coordinates (mm) of the grid's columns, rows and slices.
        centre: LPS position (mm) of the prostate centre.
        angle: in-plane rotation of the patient (radians).
        rng: numpy Generator; the same generator state gives the same pelvis.

    Returns:
        float32 array (len(z), len(y), len(x)).
    """
    canvas = Canvas(x, y, z, centre, angle, rng)
    level = tissue_levels(rng)
    prostate = {"a": rng.uniform(19, 27), "b": rng.uniform(14, 19), "h": rng.uniform(16, 22)}
    anterior = _body(canvas, level, rng)
    _muscles(canvas, level, rng, prostate, anterior)
    _bones(canvas, level, rng, prostate)
    _vessels(canvas, level, rng)
    _rectum(canvas, level, rng, prostate)
    _bladder(canvas, level, rng, prostate)
    _vesicles(canvas, level, rng, prostate)
    _prostate(canvas, level, rng, prostate)
    return canvas.image


def _fat(canvas, level):
    """Fat value: bright, with thin dark fibrous septa where a smooth field crosses zero."""
    def value(index):
        texture = canvas.fine[index] * np.float32(0.04 * level["fat"])
        texture += canvas.medium[index] * np.float32(0.03 * level["fat"])
        texture += np.float32(level["fat"])
        septa = canvas.septa(index)
        septa *= np.float32(-0.45)
        septa += np.float32(1.0)
        texture *= septa
        return texture
    return value


def _muscle(canvas, level):
    """Muscle value: dark grey, faintly striated, with a few bright streaks of fat."""
    def value(index):
        texture = 1.0 + 0.06 * canvas.fine[index] + 0.08 * canvas.medium[index]
        return level["muscle"] * texture + 0.35 * level["fat"] * canvas.septa(index, 1.5, 0.06)
    return value


def _body(canvas, level, rng):
    anterior, posterior = -rng.uniform(72, 90), rng.uniform(100, 125)
    half_width = rng.uniform(140, 180)
    index = (slice(None),) * 3
    block = (canvas.w[:, None, None], canvas.plane_u[None], canvas.plane_v[None])  # 2-D outline
    body = blob(block, (0.0, (anterior + posterior) / 2, 0.0),
                (half_width, (posterior - anterior) / 2, None), edge=canvas.edge, power=2.6,
                wobble=wobble(rng, 0.01))
    # Gluteal cleft: a dark line in the posterior midline.
    cleft = blob(block, (0.0, posterior, 0.0), (1.2, rng.uniform(25, 40), None), edge=canvas.edge)
    canvas.image = _fat(canvas, level)(index)
    canvas.image *= body * (1.0 - 0.8 * cleft)
    return anterior


def _muscles(canvas, level, rng, prostate, anterior):
    muscle = (_muscle(canvas, level),)
    b, h = prostate["b"], prostate["h"]
    wall = anterior + rng.uniform(14, 30)  # inner side of the subcutaneous fat
    everywhere = (-1e4, 1e4)
    for side in (-1.0, 1.0):
        # Rectus abdominis above the pubis, gluteus maximus behind, pelvic side-wall muscles.
        canvas.layers(muscle, (side * rng.uniform(24, 30), wall + 6, 0.0),
                      (rng.uniform(18, 24), rng.uniform(4.5, 6.5), None), w_range=(-8, 1e4),
                      flat=True, wobble=wobble(rng, 0.04))
        canvas.layers(muscle, (side * rng.uniform(75, 90), rng.uniform(80, 95), 0.0),
                      (rng.uniform(40, 50), rng.uniform(22, 28), None), angle=side * 0.6,
                      w_range=everywhere, flat=True, wobble=wobble(rng, 0.05))
        canvas.layers(muscle, (side * rng.uniform(58, 66), -rng.uniform(30, 40), 0.0),
                      (rng.uniform(13, 17), rng.uniform(13, 17), None), w_range=(h, 1e4),
                      flat=True, wobble=wobble(rng, 0.05))
        canvas.layers(muscle, (side * rng.uniform(50, 56), rng.uniform(-2, 8), rng.uniform(-5, 5)),
                      (rng.uniform(8, 11), rng.uniform(30, 36), rng.uniform(34, 40)),
                      angle=-side * 0.15)
        canvas.layers(muscle, (side * rng.uniform(50, 58), -b - rng.uniform(20, 28), -h - 10),
                      (rng.uniform(16, 22), rng.uniform(11, 15), rng.uniform(20, 28)),
                      angle=side * 0.4)
    _levator(canvas, level, rng, prostate, muscle[0])


def _levator(canvas, level, rng, prostate, muscle):
    """Levator ani: a thin funnel around prostate and rectum, open anteriorly, narrowing down."""
    a, b, h = prostate["a"], prostate["b"], prostate["h"]
    bottom, thickness = -h - rng.uniform(12, 20), rng.uniform(2.5, 4.0)
    centre = (0.0, b + rng.uniform(6, 10), 0.0)
    found = canvas.region((-a - 40, a + 40), (-b - 10, b + 70), (bottom, 0.1 * h))
    if found is None:
        return
    index, block = found
    rise = np.maximum(block[0] - bottom, 0.0)
    open_front = np.clip((block[2] + 0.1 * b) / 8.0, 0.0, 1.0)
    for value, inset in ((muscle, 0.0), (_fat(canvas, level), thickness)):
        semi = (22 + 0.3 * rise - inset, 19 + 0.12 * rise - inset, None)
        membership = blob(block, centre, semi, edge=canvas.edge) * open_front
        canvas.paint(index, membership, value(index))


def _bone(canvas, level, centre, semi, cortex=1.8, **options):
    """Dark cortex around fatty marrow with trabecular texture."""
    marrow = canvas.textured(level["marrow"], fine=0.18, medium=0.1)
    canvas.layers((level["cortex"], marrow), centre, semi, (0.0, cortex), **options)


def _bones(canvas, level, rng, prostate):
    b, h = prostate["b"], prostate["h"]
    pubis_v, pubis_w = -b - rng.uniform(16, 22), -rng.uniform(8, 16)
    for side in (-1.0, 1.0):
        _bone(canvas, level, (side * rng.uniform(10, 12), pubis_v, pubis_w),
              (rng.uniform(9, 11), rng.uniform(8, 10), rng.uniform(14, 18)))
        _bone(canvas, level, (side * 42, pubis_v + 12, pubis_w + 22),
              (rng.uniform(30, 34), rng.uniform(6.5, 8), rng.uniform(6, 8)), angle=side * 0.41)
        _bone(canvas, level, (side * 30, pubis_v + 24, pubis_w - 16),
              (rng.uniform(24, 28), rng.uniform(6, 7.5), rng.uniform(9, 12)), angle=side * 0.88)
        _bone(canvas, level, (side * rng.uniform(56, 62), rng.uniform(18, 30), -h - 6),
              (rng.uniform(10, 13), rng.uniform(20, 25), rng.uniform(22, 28)), angle=-side * 0.3)
        # Hip joint: the acetabulum medial to the femoral head, a rim of cartilage, the head.
        radius = rng.uniform(22, 25)
        head = (side * rng.uniform(80, 90), -rng.uniform(2, 12), h + rng.uniform(-6, 4))
        cup = (head[0] - side * 0.6 * radius, head[1], head[2] + 2)
        _bone(canvas, level, cup, (0.6 * radius + 6, radius + 7, radius + 8), cortex=2.5)
        neck = (head[0] + side * 0.9 * radius, head[1] + 3, head[2] - 0.7 * radius)
        _bone(canvas, level, neck, (radius, 0.6 * radius, radius), angle=side * 0.2)
        marrow = canvas.textured(level["marrow"], fine=0.18, medium=0.1)
        canvas.layers((level["cartilage"], level["cortex"], marrow), head, (radius + 1.8,) * 3,
                      (0.0, 1.8, 3.3))
    canvas.shape(level["cartilage"] * 0.6, (0.0, pubis_v, pubis_w), (1.6, 8.0, 15.0))
    # Coccyx tip, behind the rectum in the upper slices.
    _bone(canvas, level, (0.0, b + rng.uniform(50, 60), h + rng.uniform(5, 15)),
          (rng.uniform(7, 10), rng.uniform(5, 7), rng.uniform(14, 20)), cortex=1.5)


def _vessels(canvas, level, rng):
    for side in (-1.0, 1.0):  # external iliac / femoral artery and vein
        u, v = side * rng.uniform(55, 65), -rng.uniform(38, 46)
        canvas.shape(level["vein"] * 0.2, (u - side * 9, v, 0.0), (5.0, 4.0, None),
                     w_range=(-1e4, 1e4), flat=True)
        canvas.shape(level["artery"], (u, v, 0.0), (3.5, 3.5, None), w_range=(-1e4, 1e4),
                     flat=True)
    for _ in range(40):  # short small vessels crossing the fat
        u0, v0, w0 = rng.uniform(-85, 85), rng.uniform(-60, 95), rng.uniform(-40, 60)
        du, dv = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
        radius = rng.uniform(0.6, 1.6)
        value = level["artery"] if rng.uniform() < 0.5 else level["vein"] * 1.2
        canvas.shape(value, (lambda w, u0=u0, du=du, w0=w0: u0 + du * (w - w0),
                             lambda w, v0=v0, dv=dv, w0=w0: v0 + dv * (w - w0), 0.0),
                     (radius, radius, None), around=(u0, v0), reach=radius + 6.0,
                     w_range=(w0 - 20, w0 + 20))


def _rectum(canvas, level, rng, prostate):
    b = prostate["b"]
    semi_u, semi_v = rng.uniform(16, 23), rng.uniform(11, 15)
    offset, sway, phase = rng.uniform(-4, 4), rng.uniform(2, 5), rng.uniform(0, 2 * np.pi)
    front = 0.8 * b + rng.uniform(2.5, 4.5)
    centre_u = lambda w: offset + sway * np.sin(w / 35.0 + phase)  # noqa: E731
    centre_v = lambda w: front + semi_v + 0.12 * np.maximum(w, 0.0)  # noqa: E731 - sacral curve
    wall, fascia = rng.uniform(3.0, 4.5), rng.uniform(4, 8)
    # Mesorectal fascia (a faint dark line in the fat), the muscular wall, mucosa, stool.
    values = (0.5 * (level["stroma"] + level["fat"]), _fat(canvas, level), level["rectal_wall"],
              level["mucosa"], canvas.textured(level["stool"], fine=0.15, medium=0.35))
    insets = (-fascia, 0.7 - fascia, 0.0, wall - 1.2, wall)
    found = canvas.layers(values, (centre_u, centre_v, 0.0), (semi_u, semi_v, None), insets,
                          around=(offset, front + semi_v + 3),
                          reach=(1.1 * semi_u + sway + fascia, 1.1 * semi_v + fascia + 4),
                          w_range=(-1e4, 1e4), wobble=wobble(rng, 0.05, (3, 4, 5, 6, 7)))
    # Gas rises anteriorly (supine patient), in an amount that varies along w.
    gas, gas_phase = rng.uniform(-0.3, 1.0), rng.uniform(0, 2 * np.pi)
    if found is not None and gas > 0:
        index, memberships = found
        w, v = canvas.w[index[0], None, None], canvas.v[index]
        depth = 2 * (semi_v - wall) * gas * np.clip(np.sin(w / 14.0 + gas_phase), 0, 1)
        level_v = centre_v(w) - (semi_v - wall) + depth
        canvas.paint(index, memberships[-1] * np.clip((level_v - v) / canvas.edge + 0.5, 0, 1),
                     0.0)


def _bladder(canvas, level, rng, prostate):
    b, h = prostate["b"], prostate["h"]
    semi = (rng.uniform(30, 50), rng.uniform(22, 34), rng.uniform(22, 34))
    centre = (rng.uniform(-4, 4), -0.3 * b + rng.uniform(-6, 2), h + semi[2] - rng.uniform(2, 5))
    canvas.layers((level["bladder_wall"], canvas.textured(level["urine"], fine=0.01)), centre,
                  semi, (0.0, rng.uniform(2.0, 3.5)), power=2.3)


def _vesicles(canvas, level, rng, prostate):
    """Seminal vesicles: paired lobulated sacs of bright fluid with thin dark septa."""
    b, h = prostate["b"], prostate["h"]

    def fluid(index):
        septa = np.clip(1.0 - np.abs(canvas.fine[index]) * 3.0, 0.0, 1.0)
        return level["vesicle"] * (1.0 - 0.7 * septa)
    for side in (-1.0, 1.0):
        centre = (side * rng.uniform(14, 20), 0.6 * b + rng.uniform(2, 6), h + rng.uniform(2, 8))
        semi = (rng.uniform(14, 20), rng.uniform(6, 9), rng.uniform(8, 11))
        canvas.layers((level["bladder_wall"], fluid), centre, semi, (0.0, 1.2),
                      angle=-side * rng.uniform(0.2, 0.5), wobble=wobble(rng, 0.1, (2, 3, 4, 5, 6)))


def _prostate(canvas, level, rng, prostate):
    """Capsule, bright peripheral zone, nodular transition zone, stroma, urethra, lesion."""
    a, b, h = prostate["a"], prostate["b"], prostate["h"]
    taper = rng.uniform(0.05, 0.25)  # the base is wider than the apex

    def section(scale):
        def semi(w):
            t = np.clip(w / h, -1.0, 1.0)
            profile = np.clip(1.0 - np.abs(t) ** 2.5, 1e-3, 1.0) ** 0.45 * (1.0 + taper * t)
            return np.maximum(scale * profile, 1e-3)
        return semi
    canvas.shape(level["muscle"], (0.0, 0.0, -h - 8), (6.5, 6.0, 14.0))  # sphincter below
    found = canvas.layers(
        (level["capsule"], canvas.textured(level["peripheral"], fine=0.12, medium=0.1)),
        (0.0, 0.0, 0.0), (section(a), section(b), None), (0.0, rng.uniform(0.7, 1.2)),
        around=(0.0, 0.0), reach=a + 4, w_range=(-h, h), power=2.4)
    gland = canvas.mask(found and (found[0], found[1][1]))
    # Transition zone: two lobes (bigger with BPH), wrapped in a thin dark surgical capsule.
    size = rng.uniform(0.55, 0.85)
    zone = np.zeros_like(gland)
    for side in (-1.0, 1.0):
        lobe = canvas.layers(
            (level["capsule"] * 1.4, canvas.textured(level["transition"], fine=0.1, medium=0.15)),
            (side * a * size * 0.32, -0.2 * b, 0.25 * h),
            (a * size * 0.6, b * size * 0.85, h * 0.72), (0.0, 0.8), within=gland)
        if lobe is not None:
            np.maximum(zone[lobe[0]], lobe[1][1], out=zone[lobe[0]])
    for _ in range(int(rng.uniform(20, 40) * size)):  # BPH nodules, glandular or stromal
        centre = (rng.uniform(-1, 1) * a * size, -0.25 * b + rng.uniform(-0.7, 0.7) * b * size,
                  0.25 * h + rng.uniform(-0.7, 0.7) * h)
        semi = tuple(rng.uniform(2.0, 6.0) * rng.uniform(0.8, 1.2, size=3))
        tone = level["transition"] * float(rng.choice([0.55, 0.75, 1.3, 1.6, 1.9]))
        canvas.layers((level["transition"] * 0.55, canvas.textured(tone, fine=0.12)), centre,
                      semi, (0.0, 0.7), within=zone)
    canvas.shape(canvas.textured(level["stroma"], fine=0.08), (0.0, -1.0 * b, 0.1 * h),
                 (0.55 * a, 0.38 * b, 0.95 * h), within=gland)
    canvas.shape(canvas.textured(level["central"], fine=0.08), (0.0, 0.3 * b, 0.6 * h),
                 (0.42 * a, 0.4 * b, 0.45 * h), within=gland)
    if rng.uniform() < 0.65:  # a low-T2 lesion in the peripheral zone
        side = float(rng.choice([-1.0, 1.0]))
        centre = (side * a * rng.uniform(0.3, 0.65), b * rng.uniform(0.3, 0.6),
                  h * rng.uniform(-0.6, 0.4))
        canvas.shape(canvas.textured(level["lesion"], fine=0.05), centre,
                     tuple(rng.uniform(3, 8, size=3)), within=gland, wobble=wobble(rng, 0.1))
    # Urethra: a dark muscular ring around a small bright lumen, bending at the verumontanum.
    path = (lambda w: 0.0 * w, lambda w: -0.2 * b + 0.004 * w * w - 0.05 * w, 0.0)
    canvas.layers((level["stroma"], level["urethra"]), path, (3.0, 3.0, None), (0.0, 1.8),
                  around=(0.0, -0.2 * b), reach=10.0, w_range=(-h - 16, 0.95 * h))
    # Neurovascular bundles (posterolateral) and the venous plexus (anterolateral).
    for side in (-1.0, 1.0):
        for _ in range(3):
            spot = (side * (a + rng.uniform(0, 4)), 0.7 * b + rng.uniform(-3, 3), 0.0)
            radius = rng.uniform(0.7, 1.5)
            canvas.shape(level["artery"] if rng.uniform() < 0.5 else level["vein"], spot,
                         (radius, radius, None), w_range=(-h, 0.8 * h))
            spot = (side * a * rng.uniform(0.5, 0.9), -b - rng.uniform(1.5, 4), 0.0)
            radius = rng.uniform(1.0, 2.2)
            canvas.shape(level["vein"], spot, (radius, radius * 0.7, None), w_range=(-h, 0.6 * h))
