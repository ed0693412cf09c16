"""SyntheticShapes: a generated dataset that needs no download (tests and the default run).

Small RGB images of coloured shapes on plain noisy backgrounds, one class per shape, with
plain English class names a CLIP text encoder knows. On first use it renders
``DATASET.ROOT/synthetic_shapes/images/<class>/<split>_<i>.png`` and
``split_zhou_SyntheticShapes.json`` (CoOp's split format) and re-uses them afterwards; then it
behaves like any CoOp split dataset (few-shot caches, SUBSAMPLE_CLASSES base/new).

Rendering is deterministic: image ``i`` of split ``s`` of class ``c`` draws its appearance from
``numpy.random.default_rng([seed, c, s, i])``, whatever order the images are made in.
``render_shape`` / ``shape_mask`` / ``random_appearance`` are the reusable pieces for richer
benchmarks (other styles, domain shifts).
"""
import colorsys
import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from dassl.data.datasets import DATASET_REGISTRY

from .generated import GeneratedDataset

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon", "heart", "crescent")
SPLITS = ("train", "val", "test")
DEFAULT_COUNTS = {"train": 20, "val": 10, "test": 20}
GENERATOR_VERSION = 1


# ----------------------------------------------------------------------------- rendering
def _polygon(cx, cy, radii, n, angle, start=-math.pi / 2):
    """Vertices of a polygon whose k-th vertex lies at radius radii[k % len(radii)]."""
    pts = []
    for k in range(n):
        a = start + angle + 2 * math.pi * k / n
        r = radii[k % len(radii)]
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def _rotate(points, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def shape_mask(shape, size=32, center=(0.5, 0.5), radius=0.3, angle=0.0, supersample=4):
    """Anti-aliased coverage mask ('L' image, 0..255) of a shape.

    Args:
        shape: one of SHAPES.
        size: output side in pixels.
        center: shape centre as fractions of the image side.
        radius: circumscribed radius as a fraction of the image side.
        angle: rotation in radians.
        supersample: drawing scale before the box-filter downsampling.
    """
    big = size * supersample
    cx, cy, r = center[0] * big, center[1] * big, radius * big
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)

    def disc(rad, dx=0.0, dy=0.0):
        return [cx + dx - rad, cy + dy - rad, cx + dx + rad, cy + dy + rad]

    if shape == "circle":
        draw.ellipse(disc(r), fill=255)
    elif shape == "ring":
        draw.ellipse(disc(r), fill=255)
        draw.ellipse(disc(0.55 * r), fill=0)
    elif shape == "crescent":
        draw.ellipse(disc(r), fill=255)
        cut = Image.new("L", (big, big), 0)
        d = 0.5 * r
        ImageDraw.Draw(cut).ellipse(disc(0.85 * r, d * math.cos(angle), -d * math.sin(angle) - 0.2 * r), fill=255)
        mask = ImageChops.subtract(mask, cut)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, [r], 4, angle, start=-math.pi / 4), fill=255)
    elif shape == "diamond":  # a rhombus, taller than wide
        pts = [(cx, cy - r), (cx + 0.62 * r, cy), (cx, cy + r), (cx - 0.62 * r, cy)]
        draw.polygon(_rotate(pts, cx, cy, angle), fill=255)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy + 0.15 * r, [r], 3, angle), fill=255)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, [r], 6, angle), fill=255)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy + 0.08 * r, [r, 0.42 * r], 10, angle), fill=255)
    elif shape == "cross":
        w = 0.34 * r
        pts = [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
               (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
               (cx - r, cy - w), (cx - w, cy - w)]
        draw.polygon(_rotate(pts, cx, cy, angle), fill=255)
    elif shape == "heart":
        ts = np.linspace(0, 2 * math.pi, 60, endpoint=False)
        xs = 16 * np.sin(ts) ** 3
        ys = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts))
        scale = r / 17.0
        pts = [(cx + x * scale, cy + (y + 2.5) * scale) for x, y in zip(xs, ys)]
        draw.polygon(_rotate(pts, cx, cy, angle), fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    return mask.resize((size, size), Image.BOX)


def render_shape(shape, size=32, fg=(220, 40, 40), bg=(240, 240, 240), center=(0.5, 0.5), radius=0.3,
                 angle=0.0, noise_std=0.0, rng=None):
    """An RGB image of ``shape`` in colour ``fg`` over a ``bg`` background, plus optional
    Gaussian pixel noise (std in 0..255 units, drawn from ``rng``)."""
    alpha = np.asarray(shape_mask(shape, size, center, radius, angle), dtype=np.float32)[..., None] / 255.0
    img = alpha * np.asarray(fg, np.float32) + (1 - alpha) * np.asarray(bg, np.float32)
    if noise_std > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        img = img + rng.normal(0.0, noise_std, img.shape)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def _hsv(h, s, v):
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _luma(rgb):
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255.0


def random_appearance(rng):
    """Random render_shape keyword arguments: a saturated foreground colour, a
    low-saturation background of clearly different brightness, size, position, tilt, noise."""
    fg = _hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
    lum = _luma(fg)
    bg_v = rng.uniform(0.0, max(lum - 0.35, 0.05)) if lum > 0.5 else rng.uniform(min(lum + 0.35, 0.95), 1.0)
    bg = _hsv(rng.random(), rng.uniform(0.0, 0.35), bg_v)
    radius = rng.uniform(0.24, 0.40)
    center = tuple(rng.uniform(radius + 0.02, 0.98 - radius, size=2))
    return {"fg": fg, "bg": bg, "center": center, "radius": radius,
            "angle": math.radians(rng.uniform(-20, 20)), "noise_std": rng.uniform(0.0, 8.0)}


def render_random_shape(shape, rng, size=32):
    """``render_shape`` with ``random_appearance(rng)``."""
    return render_shape(shape, size=size, rng=rng, **random_appearance(rng))


def generator_params(classes=SHAPES, counts=None, size=32, seed=0):
    return {"version": GENERATOR_VERSION, "classes": list(classes), "counts": dict(counts or DEFAULT_COUNTS),
            "size": size, "seed": seed}


@DATASET_REGISTRY.register()
class SyntheticShapes(GeneratedDataset):
    """10 shape classes, 20 train / 10 val / 20 test 32x32 images each, generated on first use."""

    dataset_dir = "synthetic_shapes"
    counts = DEFAULT_COUNTS

    def classnames_in_order(self):
        return list(SHAPES)

    def render(self, label, shape, rng):
        return render_random_shape(shape, rng, 32)

    def generator_params(self):
        return generator_params()
