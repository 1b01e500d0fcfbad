"""Deterministic procedural renderer for the toy world.

32x32 RGB images of one shape (circle, square, triangle, cross) in one colour
(red, green, blue, yellow), random size and position, on a dark noisy
background. Everything is a pure function of a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np

SIZE = 32
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
SYNONYMS = {"circle": ("disc",)}

_RGB = {
    "red": (225, 45, 40),
    "green": (45, 200, 60),
    "blue": (55, 90, 235),
    "yellow": (235, 215, 45),
}

_SS = 4  # supersampling factor for anti-aliased edges
_fine = (np.arange(SIZE * _SS, dtype=np.float32) + 0.5) / _SS
_GY, _GX = np.meshgrid(_fine, _fine, indexing="ij")


def _background(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(8, 30)
    tint = rng.uniform(-5, 5, size=3)
    img = base + tint + rng.normal(0, 6, size=(SIZE, SIZE, 3))
    return img.astype(np.float32)


def _mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = _GX - cx, _GY - cy
    if shape == "circle":
        m = dx * dx + dy * dy <= r * r
    elif shape == "square":
        h = r * 0.86
        m = (np.abs(dx) <= h) & (np.abs(dy) <= h)
    elif shape == "triangle":
        # upward isosceles triangle, apex at top
        top, bot, half = cy - r, cy + r * 0.85, r
        t = (_GY - top) / (bot - top)
        m = (t >= 0) & (t <= 1) & (np.abs(dx) <= half * t)
    elif shape == "cross":
        w = r * 0.36
        m = ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return m.reshape(SIZE, _SS, SIZE, _SS).mean(axis=(1, 3)).astype(np.float32)


def _colour_rgb(colour: str, rng: np.random.Generator) -> np.ndarray:
    if colour not in _RGB:
        raise ValueError(f"unknown colour {colour!r}; expected one of {COLOURS}")
    rgb = np.array(_RGB[colour], dtype=np.float32)
    return np.clip(rgb * rng.uniform(0.85, 1.05) + rng.normal(0, 8, size=3), 0, 255)


def _composite(bg: np.ndarray, alpha: np.ndarray, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    fg = rgb[None, None, :] + rng.normal(0, 5, size=(SIZE, SIZE, 3))
    img = bg * (1 - alpha[..., None]) + fg * alpha[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render(shape: str | None, colour: str | None, rng: np.random.Generator) -> np.ndarray:
    """Render one image, (32, 32, 3) uint8.

    ``shape=None`` renders the background only (no shape); ``colour=None``
    picks a random colour. Size and position are random (the shape is always
    fully inside the frame).
    """
    if colour is None:
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
    bg = _background(rng)
    rgb = _colour_rgb(colour, rng)
    if shape is None:
        return np.clip(np.rint(bg), 0, 255).astype(np.uint8)
    r = float(rng.uniform(6.0, 11.0))
    cx = float(rng.uniform(r + 1, SIZE - r - 1))
    cy = float(rng.uniform(r + 1, SIZE - r - 1))
    return _composite(bg, _mask(shape, cx, cy, r), rgb, rng)


NEGATIVE_KINDS = ("blank", "noise", "blob", "partial", "tiny", "morph")


def _box_sdf(dx: np.ndarray, dy: np.ndarray, hx: float, hy: float) -> np.ndarray:
    qx, qy = np.abs(dx) - hx, np.abs(dy) - hy
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _sdf(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Signed distance (fine-grid pixels, negative inside) to the outline ``_mask`` draws."""
    dx, dy = _GX - cx, _GY - cy
    if shape == "circle":
        return np.hypot(dx, dy) - r
    if shape == "square":
        return _box_sdf(dx, dy, r * 0.86, r * 0.86)
    if shape == "triangle":
        top, bot, half = cy - r, cy + r * 0.85, r
        slope = half / (bot - top)
        side = (np.abs(dx) - slope * (_GY - top)) / np.sqrt(1 + slope * slope)
        return np.maximum(_GY - bot, side)
    if shape == "cross":
        w = r * 0.36
        return np.minimum(_box_sdf(dx, dy, w, r), _box_sdf(dx, dy, r, w))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_negative(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Images with no clear shape, for the judge's "none" class.

    blank: background only; noise: coloured noise; blob: irregular smudge of a
    colour; partial: a shape mostly outside the frame; tiny: a 1-3 px speck;
    morph: a solid halfway blend of two different shapes.
    """
    bg = _background(rng)
    if kind == "blank":
        return np.clip(np.rint(bg), 0, 255).astype(np.uint8)
    if kind == "noise":
        amp = rng.uniform(20, 120)
        img = bg + rng.normal(0, amp, size=(SIZE, SIZE, 3)) * rng.uniform(0.2, 1.0, size=3)
        if rng.random() < 0.5:  # low-frequency colour noise
            lo = rng.normal(0, amp, size=(4, 4, 3))
            img = bg + np.kron(lo, np.ones((8, 8, 1)))
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    rgb = _colour_rgb(colour, rng)
    if kind == "blob":
        # sum of a few gaussians, soft-thresholded: irregular, fuzzy smudge
        field = np.zeros((SIZE, SIZE), dtype=np.float32)
        yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        cx, cy = rng.uniform(8, 24, size=2)
        for _ in range(int(rng.integers(2, 6))):
            gx, gy = cx + rng.normal(0, 5), cy + rng.normal(0, 5)
            s = rng.uniform(1.5, 5.0)
            field += np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * s * s)).astype(np.float32)
        alpha = np.clip(field * rng.uniform(0.3, 0.9), 0, 1)
        return _composite(bg, alpha, rgb, rng)
    if kind == "partial":
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        r = float(rng.uniform(7.0, 11.0))
        side = int(rng.integers(4))
        off = rng.uniform(0.55, 0.9) * r  # centre outside the frame by this much
        along = rng.uniform(4, SIZE - 4)
        cx, cy = [(-off, along), (SIZE + off, along), (along, -off), (along, SIZE + off)][side]
        return _composite(bg, _mask(shape, cx, cy, r), rgb, rng)
    if kind == "morph":
        # a crisp, solid halfway blend of two different shapes (a rounded square, a lumpy
        # cross...): what a generator draws when it has not decided. It is no shape, so
        # the judge must not snap it to the nearest class (the roundest: "circle").
        a, b = rng.choice(len(SHAPES), size=2, replace=False)
        r = float(rng.uniform(6.0, 11.0))
        cx, cy = (float(v) for v in rng.uniform(r + 1, SIZE - r - 1, size=2))
        w = float(rng.uniform(0.4, 0.6))
        sdf = w * _sdf(SHAPES[a], cx, cy, r) + (1 - w) * _sdf(SHAPES[b], cx, cy, r)
        alpha = (sdf <= 0).reshape(SIZE, _SS, SIZE, _SS).mean(axis=(1, 3)).astype(np.float32)
        return _composite(bg, alpha, rgb, rng)
    if kind == "tiny":
        r = float(rng.uniform(0.8, 2.0))
        cx, cy = rng.uniform(4, SIZE - 4, size=2)
        return _composite(bg, _mask("circle", float(cx), float(cy), r), rgb, rng)
    raise ValueError(f"unknown negative kind {kind!r}; expected one of {NEGATIVE_KINDS}")


def captions_for(shape: str | None = None, colour: str | None = None, synonyms: bool = True) -> list[str]:
    """All non-empty captions that truthfully describe an image of ``shape`` in ``colour``.

    With only ``shape`` (or only ``colour``) given, the captions that mention
    only that attribute; with neither, the neutral caption "a shape".
    """
    names: list[str | None]
    names = [shape] if shape is None else [shape, *(SYNONYMS.get(shape, ()) if synonyms else ())]
    out: list[str] = []
    for name in names:
        if name is not None and colour is not None:
            out.append(f"a {colour} {name}")
        if name is not None:
            out.append(f"a {name}")
    if colour is not None:
        out.append(f"a {colour} shape")
    out.append("a shape")
    return out


def all_captions(include_empty: bool = True) -> list[str]:
    """Every distinct caption of the toy world (sorted, deterministic)."""
    caps = {"a shape"}
    for s in SHAPES:
        for c in COLOURS:
            caps.update(captions_for(s, c))
    out = sorted(caps)
    return ([""] if include_empty else []) + out


def sample_caption(shape: str, colour: str, rng: np.random.Generator, p_empty: float = 0.0) -> str:
    """Training caption distribution: full 45%, shape-only 20%, colour-only 20%,
    "a shape" 15%; circles use the synonym "disc" 35% of the time."""
    if p_empty and rng.random() < p_empty:
        return ""
    name = shape
    if shape in SYNONYMS and rng.random() < 0.35:
        syn = SYNONYMS[shape]
        name = syn[int(rng.integers(len(syn)))]
    u = rng.random()
    if u < 0.45:
        return f"a {colour} {name}"
    if u < 0.65:
        return f"a {name}"
    if u < 0.85:
        return f"a {colour} shape"
    return "a shape"


def render_batch(
    n: int,
    seed: int,
    shapes: tuple[str, ...] | list[str] | None = None,
    colours: tuple[str, ...] | list[str] | None = None,
    p_empty: float = 0.0,
) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Render ``n`` images deterministically from ``seed``.

    Image i depends only on (seed, i), not on n. ``shapes``/``colours`` restrict
    the random choice. Returns (uint8 NHWC images, shapes, colours, captions).
    """
    shapes = tuple(shapes or SHAPES)
    colours = tuple(colours or COLOURS)
    imgs = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    out_s, out_c, out_cap = [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        s = shapes[int(rng.integers(len(shapes)))]
        c = colours[int(rng.integers(len(colours)))]
        imgs[i] = render(s, c, rng)
        out_s.append(s)
        out_c.append(c)
        out_cap.append(sample_caption(s, c, rng, p_empty))
    return imgs, out_s, out_c, out_cap
