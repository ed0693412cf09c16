"""The procedural image-caption world of the bundled benchmark (all of it synthetic).

A scene is one shape (``SHAPES``, from SyntheticShapes) of a named colour (``COLORS``) and size
(``SIZES``) over a two-tone background pattern (``PATTERNS``), rendered at 32x32 with numpy and
PIL. It is rendered in one of several styles:

- ``pretrain``: the world the tiny CLIP is pretrained on (trainers/world_clip.py), dark
  patterned backgrounds, bright shapes, light noise, captioned by ``CAPTION_TEMPLATES``;
- ``photo``: the downstream domain of the classification tasks: the same scenes shifted (lighter
  backgrounds, colour jitter, stronger noise, wider scale range), so zero-shot accuracy sits
  below the pretraining ceiling;
- ``sketch``, ``inverted``, ``noisy``, ``cluttered``: further shifts of the ``photo`` domain
  (analogues of ImageNet-Sketch / -R / -A) for domain generalization.

The tasks (one dataset file each, ``datasets/world_*.py``) are ``WorldTask`` subclasses: a class
is a set of fixed scene attributes (``{"shape": "star"}``, ``{"color": "red", "shape":
"circle"}``, ``{"pattern": "striped"}``), everything else is drawn at random. Captions never
say "photo": the zero-shot template "a photo of a {}." is a template pretraining never used.

Everything is deterministic given a seed: ``sample_scene`` / ``render_scene`` take a
``numpy.random.Generator``.
"""
import math

import numpy as np
from PIL import Image

from .common import GeneratedDataset
from .synthetic_shapes import SHAPES, shape_mask

WORLD_VERSION = 1  # bump when the pretraining rendering or captions change: pretraining caches re-made
TASK_VERSION = 2  # bump when the task renderings change: task images re-made
IMAGE_SIZE = 32
COLORS = {
    "red": (220, 40, 40), "orange": (245, 140, 30), "yellow": (235, 215, 40), "green": (40, 170, 60),
    "blue": (40, 90, 230), "purple": (140, 60, 200), "pink": (245, 130, 190), "white": (235, 235, 235),
}
SIZES = {"small": (0.16, 0.24), "large": (0.30, 0.40)}  # radius range, as a fraction of the side
PATTERNS = ("plain", "striped", "dotted", "checkered", "grid", "wavy", "gradient", "speckled", "zigzag",
            "concentric")
STYLES = ("pretrain", "photo", "sketch", "inverted", "noisy", "cluttered")
CAPTION_TEMPLATES = (
    "a {size} {color} {shape} on a {pattern} background.",
    "a {color} {shape}.",
    "a {shape}.",
    "a {size} {shape}.",
    "a {shape} on a {pattern} background.",
    "a {color} {shape} on a {pattern} background.",
    "a {pattern} background.",
)


# ----------------------------------------------------------------------------- scenes
def sample_scene(rng, **fixed):
    """A random scene dict {shape, color, size, pattern}; ``fixed`` attributes are kept."""
    scene = {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "color": list(COLORS)[rng.integers(len(COLORS))],
        "size": list(SIZES)[rng.integers(len(SIZES))],
        "pattern": PATTERNS[rng.integers(len(PATTERNS))],
    }
    unknown = set(fixed) - set(scene)
    if unknown:
        raise ValueError(f"unknown scene attributes {sorted(unknown)}; valid: {sorted(scene)}")
    scene.update(fixed)
    return scene


def caption(scene, template):
    """The caption of a scene under one of CAPTION_TEMPLATES."""
    return template.format(**scene)


def pattern_mask(pattern, rng, size=IMAGE_SIZE):
    """A background pattern as a float mask [size, size] in [0, 1] (0: first tone, 1: second)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(4.0, 8.0)
    phase = rng.uniform(0.0, period)
    if rng.random() < 0.5:  # orientation of the line patterns
        x, y = y, x
    if pattern == "plain":
        return np.zeros((size, size), np.float32)
    if pattern == "striped":
        return (((y + phase) % period) < period / 2).astype(np.float32)
    if pattern == "dotted":
        cy, cx = (y + phase) % period - period / 2, (x + phase) % period - period / 2
        return (cy ** 2 + cx ** 2 < (0.28 * period) ** 2).astype(np.float32)
    if pattern == "checkered":
        cell = period / 2
        return ((np.floor((x + phase) / cell) + np.floor((y + phase) / cell)) % 2).astype(np.float32)
    if pattern == "grid":
        return ((((x + phase) % period) < 1.2) | (((y + phase) % period) < 1.2)).astype(np.float32)
    if pattern == "wavy":
        wave = 2.0 * np.sin(2 * math.pi * x / rng.uniform(8.0, 14.0))
        return (((y + wave + phase) % period) < period / 2).astype(np.float32)
    if pattern == "zigzag":
        lam = rng.uniform(6.0, 10.0)
        tri = 3.0 * np.abs(((x / lam) % 1.0) * 2 - 1)
        return (((y + tri + phase) % period) < period / 2).astype(np.float32)
    if pattern == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        t = (x - size / 2) * math.cos(a) + (y - size / 2) * math.sin(a)
        return ((t - t.min()) / (t.max() - t.min())).astype(np.float32)
    if pattern == "speckled":
        return (rng.random((size, size)) < 0.3).astype(np.float32)
    if pattern == "concentric":
        cy, cx = rng.uniform(0, size, 2)
        r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        return (((r + phase) % period) < period / 2).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}; valid: {', '.join(PATTERNS)}")


def _tone(rng, low, high):
    """A low-saturation RGB tone of brightness in [low, high] (0..255 floats)."""
    v = rng.uniform(low, high)
    tint = rng.uniform(-0.15, 0.15, 3) * v
    return np.clip(v + tint, 0.0, 1.0) * 255.0


def _shape_alpha(shape, rng, radius_range, size=IMAGE_SIZE, center=None):
    radius = rng.uniform(*radius_range)
    if center is None:
        center = tuple(rng.uniform(radius + 0.02, 0.98 - radius, size=2))
    angle = math.radians(rng.uniform(-25, 25))
    mask = shape_mask(shape, size, center=center, radius=radius, angle=angle, supersample=4)
    return np.asarray(mask, np.float32)[..., None] / 255.0  # [size, size, 1]


def _outline(alpha):
    """Edge band of a coverage mask [H, W, 1]: the mask minus its 3x3 erosion."""
    a = alpha[..., 0]
    padded = np.pad(a, 1, mode="edge")
    eroded = np.min([padded[dy:dy + a.shape[0], dx:dx + a.shape[1]] for dy in range(3) for dx in range(3)], axis=0)
    return np.clip(a - eroded, 0.0, 1.0)[..., None] * 1.5


def render_scene(scene, rng, style="pretrain", size=IMAGE_SIZE):
    """RGB uint8 array [size, size, 3] of a scene in a rendering style (see STYLES)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    fg = np.asarray(COLORS[scene["color"]], np.float32)
    radius_range = SIZES[scene["size"]]
    if style == "sketch":  # a dark outline on light paper, no fill, no pattern
        paper = _tone(rng, 0.8, 1.0)
        ink = np.clip(fg * 0.35 + rng.normal(0, 10, 3), 0, 255)
        alpha = np.clip(_outline(_shape_alpha(scene["shape"], rng, radius_range, size)), 0, 1)
        img = alpha * ink + (1 - alpha) * paper
        return _finish(img + rng.normal(0, 4.0, img.shape))

    if style == "pretrain":
        tone_a, tone_b = _tone(rng, 0.02, 0.25), _tone(rng, 0.15, 0.45)
        noise = rng.uniform(0.0, 6.0)
    else:  # the photo domain and its shifts: lighter backgrounds, colour jitter, more noise
        tone_a, tone_b = _tone(rng, 0.1, 0.35), _tone(rng, 0.25, 0.55)
        fg = np.clip(fg + rng.normal(0, 20, 3), 0, 255)
        noise = rng.uniform(6.0, 12.0)
        radius_range = (radius_range[0] * 0.9, radius_range[1])
    pattern = pattern_mask(scene["pattern"], rng, size)[..., None]
    img = pattern * tone_b + (1 - pattern) * tone_a
    if style == "cluttered":  # small distractor shapes of other kinds under the labelled one
        others = [s for s in SHAPES if s != scene["shape"]]
        for _ in range(3):
            d_alpha = _shape_alpha(others[rng.integers(len(others))], rng, (0.10, 0.14), size)
            d_color = np.asarray(list(COLORS.values())[rng.integers(len(COLORS))], np.float32)
            img = d_alpha * d_color + (1 - d_alpha) * img
        radius_range = (0.28, 0.40)
    alpha = _shape_alpha(scene["shape"], rng, radius_range, size)
    img = alpha * fg + (1 - alpha) * img
    if style == "noisy":
        noise = 45.0
    img = img + rng.normal(0.0, noise, img.shape)
    if style == "inverted":
        img = 255.0 - img
    return _finish(img)


def _finish(img):
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_caption_batch(rng, batch_size, style="pretrain", size=IMAGE_SIZE):
    """A pretraining batch: images uint8 [B, size, size, 3] and B captions (random scenes, one
    random template each)."""
    images = np.empty((batch_size, size, size, 3), np.uint8)
    captions = []
    for b in range(batch_size):
        scene = sample_scene(rng)
        images[b] = render_scene(scene, rng, style, size)
        captions.append(caption(scene, CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]))
    return images, captions


# ----------------------------------------------------------------------------- tasks
class WorldTask(GeneratedDataset):
    """A classification task in the world: ``classes`` maps each class name (words the tiny
    CLIP learned) to the scene attributes it fixes; images are rendered in ``style``.

    Labels follow ``classes``' order, so with SUBSAMPLE_CLASSES the first half are the base
    classes and the rest the new ones (CoOp's rule).
    """

    classes = {}
    style = "photo"
    counts = {"train": 16, "val": 4, "test": 200}  # 1000 test images per half: +-1.5 points
    seed = 0

    def classnames_in_order(self):
        return list(self.classes)

    def render(self, label, classname, rng):
        scene = sample_scene(rng, **self.classes[classname])
        return Image.fromarray(render_scene(scene, rng, self.style), "RGB")

    def generator_params(self):
        return {"world_version": WORLD_VERSION, "task_version": TASK_VERSION, "classes": self.classes, "style": self.style,
                "counts": dict(self.counts), "seed": self.seed, "size": IMAGE_SIZE}
