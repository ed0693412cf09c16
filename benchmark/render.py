"""Drawing the world's scenes (benchmark/world.py) as 32x32 RGB images, with numpy and PIL.

- Silhouettes: one per family (``SILHOUETTES``), polygons in unit coordinates; a member's
  marking (an eye spot, a band, a rim, ...) is drawn inside it in a contrasting shade.
- Textures: one mask function per texture word (``texture_mask``), used for background scenes
  and the texture close-ups.
- Styles (``STYLES``): how a scene becomes an image.
    - ``pretrain``: the world the CLIP is pretrained on (dark-to-mid lighting, light noise), in
      the scene's look (world.LOOKS: plain, dark, bright, blurry, noisy or sketched);
    - ``photo``: the tasks' domain: other lighting (a global tint and lower contrast),
      colour jitter, stronger noise, a slight blur;
    - ``aerial``: a bare background scene seen from far above: its texture at half the scale,
      a blue colour cast (AERIAL_TINT), tiny objects scattered over it (the EuroSAT-like task);
    - ``sketch``, ``inverted``, ``noisy``, ``cluttered``: shifts of ``photo`` for domain
      generalization (the analogues of ImageNet-Sketch / -R / -C / -A).
"""
import math
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .world import COLORS, FAMILIES, MEMBER_FAMILY, MEMBER_MARKING, SCENES, SIZES, TEXTURES

IMAGE_SIZE = 32
SUPERSAMPLE = 4
# The aerial style's colour cast (red, green, blue gains). A channel permutation ("false colours")
# made the scenes unlearnable for prompts (CoOp 30% val base against a 95% linear probe); a cast
# keeps them learnable while zero-shot stays weak (docs/BENCHMARK.md, "How the tasks were chosen").
AERIAL_TINT = np.array([0.7, 1.0, 1.3], np.float32)
STYLES = ("pretrain", "photo", "aerial", "sketch", "inverted", "noisy", "cluttered")
Polygon = List[Tuple[float, float]]
OBJECT_BACKGROUND_CONTRAST = 0.35  # a background's texture behind an object, muted so the object stands out


# ----------------------------------------------------------------------------- silhouettes
def _regular(n: int, radii=(1.0,), start: float = -math.pi / 2, points: int = 0) -> Polygon:
    """A polygon whose k-th of n vertices lies at radius radii[k % len(radii)]."""
    return [(radii[k % len(radii)] * math.cos(start + 2 * math.pi * k / n),
             radii[k % len(radii)] * math.sin(start + 2 * math.pi * k / n)) for k in range(n)]


def _radial(fn, n: int = 64) -> Polygon:
    return [(fn(t) * math.cos(t), fn(t) * math.sin(t)) for t in np.linspace(0, 2 * math.pi, n, endpoint=False)]


def _scaled_unit(poly: Polygon, scale: float, dx: float = 0.0, dy: float = 0.0) -> Polygon:
    return [(x * scale + dx, y * scale + dy) for x, y in poly]


def _heart() -> Polygon:
    ts = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    xs = 16 * np.sin(ts) ** 3 / 17
    ys = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts)) / 17 + 0.15
    return list(zip(xs.tolist(), ys.tolist()))


_CIRCLE = _radial(lambda t: 1.0, 48)
# (sign, polygon) lists: + draws, - cuts (in order). One per family, in FAMILIES' order; chosen
# to stay distinct at 32x32.
SILHOUETTE_SHAPES: Dict[str, List[Tuple[int, Polygon]]] = {
    "circle": [(1, _CIRCLE)],
    "triangle": [(1, [(x, y + 0.15) for x, y in _regular(3)])],
    "square": [(1, _regular(4, (1.0,), -math.pi / 4))],
    "star": [(1, _regular(10, (1.0, 0.42)))],
    "cross": [(1, [(-.34, -1), (.34, -1), (.34, -.34), (1, -.34), (1, .34), (.34, .34), (.34, 1), (-.34, 1),
                   (-.34, .34), (-1, .34), (-1, -.34), (-.34, -.34)])],
    "heart": [(1, _heart())],
    "crescent": [(1, _CIRCLE), (-1, [(x * 0.85 + 0.45, y * 0.85 - 0.15) for x, y in _CIRCLE])],
    "diamond": [(1, [(0, -1), (.62, 0), (0, 1), (-.62, 0)])],
    "arrow": [(1, [(-1, -.3), (.1, -.3), (.1, -.8), (1, 0), (.1, .8), (.1, .3), (-1, .3)])],
    "trefoil": [(1, _radial(lambda t: 0.6 + 0.4 * abs(math.cos(1.5 * t + math.pi / 2))))],
    "semicircle": [(1, [(x, max(y, 0.0) - 0.35) for x, y in _CIRCLE])],
    "house": [(1, [(0, -1), (.85, -.2), (.85, .9), (-.85, .9), (-.85, -.2)])],
    "bowtie": [(1, [(-1, -.8), (0, -.15), (1, -.8), (1, .8), (0, .15), (-1, .8)])],
    "tee": [(1, [(-1, -.9), (1, -.9), (1, -.4), (.3, -.4), (.3, 1), (-.3, 1), (-.3, -.4), (-1, -.4)])],
    "ell": [(1, [(-.75, -1), (-.2, -1), (-.2, .45), (.8, .45), (.8, 1), (-.75, 1)])],
    "chevron": [(1, [(-1, -.6), (0, .2), (1, -.6), (1, .1), (0, .9), (-1, .1)])],
    "bolt": [(1, [(.2, -1), (-.7, .15), (-.05, .15), (-.3, 1), (.7, -.2), (.05, -.2), (.35, -1)])],
    "ring": [(1, _CIRCLE), (-1, _scaled_unit(_CIRCLE, 0.55))],
    "bar": [(1, [(-1, -.35), (1, -.35), (1, .35), (-1, .35)])],
    "dumbbell": [(1, _scaled_unit(_CIRCLE, 0.42, -0.58)), (1, _scaled_unit(_CIRCLE, 0.42, 0.58)),
                 (1, [(-.6, -.15), (.6, -.15), (.6, .15), (-.6, .15)])],
    "droplet": [(1, _radial(lambda t: 0.55 + 0.45 * ((1 - math.sin(t)) / 2) ** 2.5))],
    "hexagon": [(1, _regular(6))],
    "spade": [(1, [(x, -y - 0.2) for x, y in _heart()]), (1, [(-.15, .3), (.15, .3), (.35, 1), (-.35, 1)])],
    "flag": [(1, [(-.8, -1), (-.6, -1), (-.6, 1), (-.8, 1)]), (1, [(-.6, -1), (.9, -.6), (-.6, -.1)])],
    "cup": [(1, [(-1, -.8), (-.55, -.8), (-.55, .35), (.55, .35), (.55, -.8), (1, -.8), (1, .85), (-1, .85)])],
}
SILHOUETTES = dict(zip(FAMILIES, SILHOUETTE_SHAPES))  # family -> silhouette name
# The markings (benchmark.world.MARKINGS) as polygons in the object's unit frame; "rim" is the
# silhouette minus its shrunken copy (object_masks).
_MARKINGS: Dict[str, List[Polygon]] = {
    "none": [],
    "eye": [_scaled_unit(_CIRCLE, 0.25, -0.35, -0.35)],
    "band": [[(-1.2, -.22), (1.2, -.22), (1.2, .22), (-1.2, .22)]],
    "cap": [[(-1.2, -1.2), (1.2, -1.2), (1.2, -.3), (-1.2, -.3)]],
    "stripe": [[(-.22, -1.2), (.22, -1.2), (.22, 1.2), (-.22, 1.2)]],
    "rim": [],
    "spots": [_scaled_unit(_CIRCLE, 0.22, -0.4, 0.3), _scaled_unit(_CIRCLE, 0.22, 0.4, 0.3)],
    "half": [[(-1.2, -1.2), (0, -1.2), (0, 1.2), (-1.2, 1.2)]],
}


def _draw(pieces, center, radius: float, angle: float, size: int) -> np.ndarray:
    """Anti-aliased coverage [size, size] in [0, 1] of (sign, polygon) pieces in a unit frame
    placed at center (fractions of the side), scaled by radius, rotated by angle (radians)."""
    big = size * SUPERSAMPLE
    cx, cy, r = center[0] * big, center[1] * big, radius * big
    c, s = math.cos(angle), math.sin(angle)
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for sign, poly in pieces:
        draw.polygon([(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in poly],
                     fill=255 if sign > 0 else 0)
    return np.asarray(mask.resize((size, size), Image.BOX), np.float32) / 255.0


def object_masks(member: str, center, radius: float, angle: float, size: int = IMAGE_SIZE):
    """(silhouette, marking) coverages [size, size] in [0, 1] of a member's drawing (its
    family's silhouette; its marking, inside it)."""
    silhouette = SILHOUETTE_SHAPES[SILHOUETTES[MEMBER_FAMILY[member]]]
    body = _draw(silhouette, center, radius, angle, size)
    marking = MEMBER_MARKING[member]
    if marking == "none":
        return body, np.zeros_like(body)
    if marking == "rim":
        inner = _draw([(sign, _scaled_unit(p, 0.6)) for sign, p in silhouette], center, radius, angle, size)
        return body, np.clip(body - inner, 0, 1)
    return body, _draw([(1, p) for p in _MARKINGS[marking]], center, radius, angle, size) * body


# ----------------------------------------------------------------------------- textures
def texture_mask(texture: str, rng, size: int = IMAGE_SIZE, scale: float = 1.0) -> np.ndarray:
    """A texture as a mask [size, size] in [0, 1] (0: first tone, 1: second tone).

    scale < 1 shrinks the pattern (a view from further away)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / scale
    period = rng.uniform(5.0, 7.0)
    phase = rng.uniform(0.0, 2 * period)
    if rng.random() < 0.5:  # orientation of the line patterns
        x, y = y, x

    def stripes(coord, p=period, duty=0.5):
        return (((coord + phase) % p) < p * duty).astype(np.float32)

    def lattice_dots(p, radius, offset_rows=False):
        yy = y + phase
        xx = x + phase + (np.floor(yy / p) % 2) * p / 2 if offset_rows else x + phase
        cy, cx = yy % p - p / 2, xx % p - p / 2
        return (cy ** 2 + cx ** 2 < radius ** 2).astype(np.float32)

    def smooth_field(n_waves, freq):
        field = np.zeros_like(x)
        for _ in range(n_waves):
            a = rng.uniform(0, 2 * math.pi)
            field += np.sin((x * math.cos(a) + y * math.sin(a)) * freq * rng.uniform(0.7, 1.3) + rng.uniform(0, 6.3))
        return field / n_waves

    if texture == "plain":
        return np.zeros((size, size), np.float32)
    if texture == "striped":
        return stripes(y)
    if texture == "dotted":
        return lattice_dots(period, 0.28 * period)
    if texture == "checkered":
        cell = period / 2
        return ((np.floor((x + phase) / cell) + np.floor((y + phase) / cell)) % 2).astype(np.float32)
    if texture == "gridded":
        return np.maximum(stripes(x, duty=0.22), stripes(y, duty=0.22))
    if texture == "wavy":
        return stripes(y + 2.0 * np.sin(2 * math.pi * x / rng.uniform(8.0, 14.0)))
    if texture == "zigzag":
        lam = rng.uniform(6.0, 10.0)
        return stripes(y + 3.0 * np.abs(((x / lam) % 1.0) * 2 - 1))
    if texture == "speckled":
        return (rng.random((size, size)) < 0.3).astype(np.float32)
    if texture == "ringed":
        cy, cx = rng.uniform(0, size, 2) / scale
        return stripes(np.sqrt((y - cy) ** 2 + (x - cx) ** 2))
    if texture == "faded":
        a = rng.uniform(0, 2 * math.pi)
        t = x * math.cos(a) + y * math.sin(a)
        return ((t - t.min()) / (t.max() - t.min() + 1e-6)).astype(np.float32)
    if texture == "slanted":
        return stripes((x + y) / math.sqrt(2))
    if texture == "crosshatched":
        return np.maximum(stripes((x + y) / math.sqrt(2), duty=0.25), stripes((x - y) / math.sqrt(2), duty=0.25))
    if texture == "spotted":
        mask = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(4, 8))):
            cy, cx = rng.uniform(0, size, 2) / scale
            mask[(y - cy) ** 2 + (x - cx) ** 2 < rng.uniform(2.0, 4.0) ** 2] = 1.0
        return mask
    if texture == "pinstriped":
        return stripes(y, p=period * 0.7, duty=0.2)
    if texture == "banded":
        return stripes(y, p=period * 2.2, duty=0.5)
    if texture == "bricked":
        row = np.floor((y + phase) / 4.0)
        return np.maximum(stripes(y, p=4.0, duty=0.25),
                          (((x + phase + (row % 2) * 4.0) % 8.0) < 1.2).astype(np.float32))
    if texture == "plaid":
        return 0.5 * stripes(x, p=period * 1.6, duty=0.35) + 0.5 * stripes(y, p=period * 1.6, duty=0.35)
    if texture == "woven":
        cell = 4.0
        horizontal = ((np.floor((x + phase) / cell) + np.floor((y + phase) / cell)) % 2) == 0
        return np.where(horizontal, stripes(y, p=2.0, duty=0.5), stripes(x, p=2.0, duty=0.5)).astype(np.float32)
    if texture == "rippled":
        return (0.5 + 0.5 * np.sin(2 * math.pi * (y + phase) / period)).astype(np.float32)
    if texture == "marbled":
        return (np.abs(smooth_field(3, 0.35)) < 0.15).astype(np.float32)
    if texture == "dashed":
        return stripes(y, duty=0.3) * stripes(x, p=period * 1.3, duty=0.6)
    if texture == "swirly":
        cy, cx = rng.uniform(0.3, 0.7, 2) * size / scale
        theta = np.arctan2(y - cy, x - cx)
        radius = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        return ((np.sin(3 * theta + radius / 2.0) > 0)).astype(np.float32)
    if texture == "mottled":
        field = smooth_field(4, 0.45)
        return ((field - field.min()) / (field.max() - field.min() + 1e-6)).astype(np.float32)
    if texture == "studded":
        return lattice_dots(8.0, 1.6, offset_rows=True)
    raise ValueError(f"unknown texture {texture!r}; valid: {', '.join(TEXTURES)}")


# ----------------------------------------------------------------------------- scenes to images
def _jitter(rgb, rng, std: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, std, 3), 0, 255)


def _shade(rgb: np.ndarray) -> np.ndarray:
    """The second tone of a textured fill: darker for light colours, lighter for dark ones."""
    luma = float(rgb @ np.array([0.299, 0.587, 0.114], np.float32))
    return rgb * 0.5 if luma > 100 else rgb * 0.5 + 127.0


def background(scene: str, rng, size: int = IMAGE_SIZE, scale: float = 1.0, jitter: float = 12.0,
               contrast: float = 1.0) -> np.ndarray:
    """A scene's background [size, size, 3] (float 0..255); contrast < 1 mixes its two tones
    (behind objects, so that the object stands out)."""
    first, second, texture = SCENES[scene]
    mask = texture_mask(texture, rng, size, scale)[..., None]
    mask = 0.5 + (mask - 0.5) * contrast
    return (1 - mask) * _jitter(COLORS[first], rng, jitter) + mask * _jitter(COLORS[second], rng, jitter)


def texture_image(texture: str, first: str, rng, size: int = IMAGE_SIZE, jitter: float = 15.0) -> np.ndarray:
    """A texture close-up [size, size, 3]: the texture in colour ``first`` and a random other
    colour, at a random scale."""
    names = [c for c in COLORS if c != first]
    second = names[rng.integers(len(names))]
    mask = texture_mask(texture, rng, size, scale=rng.uniform(0.8, 1.5))[..., None]
    return (1 - mask) * _jitter(COLORS[first], rng, jitter) + mask * _jitter(COLORS[second], rng, jitter)


def _object_layer(scene: Dict[str, str], rng, size: int, color_jitter: float, radius=None, center=None):
    """(alpha [size, size, 1], fill [size, size, 3]) of the scene's object: its colour, with the
    marking in a contrasting shade."""
    radius = radius if radius is not None else rng.uniform(*SIZES[scene["size"]])
    if center is None:
        center = _position(scene["position"], radius, rng)
    body, marking = object_masks(scene["member"], center, radius, math.radians(rng.uniform(-10, 10)), size)
    color = _jitter(COLORS[scene["color"]], rng, color_jitter)
    marking = marking[..., None]
    fill = (1 - marking) * color + marking * _shade(color)
    return body[..., None], fill


def _position(position: str, radius: float, rng) -> Tuple[float, float]:
    """The object centre (fractions of the side) for a position word; the object stays inside."""
    low, high = min(radius + 0.02, 0.5), max(0.98 - radius, 0.5)
    middle = (0.5 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05))
    near, far = low + rng.uniform(0, 0.05), high - rng.uniform(0, 0.05)
    cx, cy = middle
    if position == "left":
        cx = near
    elif position == "right":
        cx = far
    elif position == "top":
        cy = near
    elif position == "bottom":
        cy = far
    return (cx, cy)


def _finish(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _photo_light(img: np.ndarray, rng) -> np.ndarray:
    """The photo domain's lighting: a global tint, lower contrast, lifted shadows."""
    tint = rng.uniform(0.8, 1.15, 3).astype(np.float32)
    contrast = rng.uniform(0.6, 0.85)
    return (img - 128.0) * contrast * tint + 128.0 * tint + rng.uniform(0, 25)


def _look(img: np.ndarray, look: str, rng) -> np.ndarray:
    """A pretraining image in one of world.LOOKS (sketches are drawn by render_scene), with
    light noise."""
    if look == "dark":
        img = img * rng.uniform(0.35, 0.5)
    elif look == "bright":
        img = img * 0.45 + rng.uniform(120, 140)
    elif look == "blurry":
        img = _blur(img, rng.uniform(1.0, 1.4))
    elif look == "noisy":
        img = img + rng.normal(0, 22, img.shape)
    return img + rng.normal(0, rng.uniform(0, 6), img.shape)


def _blur(img: np.ndarray, radius: float) -> np.ndarray:
    pil = Image.fromarray(_finish(img), "RGB").filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(pil, np.float32)


def _tiny_objects(img: np.ndarray, rng, count: int, size: int, radius=(0.06, 0.09)) -> np.ndarray:
    """img with ``count`` small random objects drawn over it (clutter)."""
    for _ in range(count):
        other = {"member": list(MEMBER_FAMILY)[rng.integers(len(MEMBER_FAMILY))],
                 "color": list(COLORS)[rng.integers(len(COLORS))],
                 "size": "tiny", "position": "center"}
        alpha, fill = _object_layer(other, rng, size, 10, radius=rng.uniform(*radius),
                                    center=tuple(rng.uniform(0.12, 0.88, 2)))
        img = alpha * fill + (1 - alpha) * img
    return img


def render_scene(scene: Dict[str, str], rng, style: str = "pretrain", size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB uint8 [size, size, 3] of a scene dict (benchmark.world.sample_scene) in a style.

    The scene's kind says what is drawn (an object on its background scene, a texture close-up,
    or the bare background scene); the style says how (see the module docstring)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    kind = scene.get("kind", "object")
    if style == "aerial":  # a bare scene from far above, under a blue cast, with tiny objects on it
        img = background(scene["scene"], rng, size, scale=0.5, jitter=20)
        img = _tiny_objects(img, rng, int(rng.integers(3, 7)), size)
        img = img * AERIAL_TINT * 0.8 + img.mean(axis=-1, keepdims=True) * 0.2 + 10
        return _finish(_blur(img, 0.6) + rng.normal(0, 6, img.shape))
    if style == "sketch" or (style == "pretrain" and scene.get("look") == "sketch"):
        # a dark outline of the object on light paper, nothing else
        paper = rng.uniform(200, 250) + rng.normal(0, 6, 3)
        alpha, _ = _object_layer(scene, rng, size, 0)
        eroded = np.asarray(Image.fromarray(_finish(alpha[..., 0] * 255)).filter(ImageFilter.MinFilter(3)),
                            np.float32)[..., None] / 255.0
        edge = np.clip((alpha - eroded) * 1.5, 0, 1)
        ink = _jitter(COLORS[scene["color"]], rng, 10) * 0.35
        return _finish(edge * ink + (1 - edge) * paper + rng.normal(0, 4, (size, size, 3)))

    pretrain = style == "pretrain"
    if kind == "texture":
        img = texture_image(scene["texture"], scene["color"], rng, size)
    elif kind == "scene":
        img = background(scene["scene"], rng, size, jitter=12 if pretrain else 20)
    else:
        img = background(scene["scene"], rng, size, jitter=12 if pretrain else 20, contrast=OBJECT_BACKGROUND_CONTRAST)
        if style == "cluttered":  # distractor objects under the labelled one
            img = _tiny_objects(img, rng, 3, size, radius=(0.10, 0.14))
        alpha, fill = _object_layer(scene, rng, size, 8 if pretrain else 20)
        img = alpha * fill + (1 - alpha) * img
    if pretrain:
        return _finish(_look(img, scene.get("look", "plain"), rng))
    img = _blur(_photo_light(img, rng), 0.5)
    img = img + rng.normal(0, 25 if style == "noisy" else rng.uniform(5, 10), img.shape)
    if style == "inverted":
        img = 255.0 - img
    return _finish(img)


def render_caption_batch(rng, batch_size: int, size: int = IMAGE_SIZE, noun_noise: float = 0.0,
                         texture_noise: float = 0.0):
    """A pretraining batch: images uint8 [B, size, size, 3], B captions and the B scene dicts
    (correlated scenes in the pretrain style; noun_noise, texture_noise: world.caption's)."""
    from .world import caption, sample_scene

    images = np.empty((batch_size, size, size, 3), np.uint8)
    captions, scenes = [], []
    for b in range(batch_size):
        scene = sample_scene(rng, correlated=True)
        images[b] = render_scene(scene, rng, "pretrain", size)
        captions.append(caption(scene, rng, noun_noise, texture_noise))
        scenes.append(scene)
    return images, captions, scenes


def sample_sheet(path: str, per_row: int = 10, seed: int = 0, scale: int = 3) -> str:
    """A PNG of example images: one row per style (objects; texture close-ups and aerial scenes
    in their own rows), ``scale`` x enlarged. ``python -m benchmark.render docs/figures/world_samples.png``"""
    from .world import sample_scene

    rows = []
    for style in STYLES:
        row = []
        for i in range(per_row):
            rng = np.random.default_rng([seed, STYLES.index(style), i])
            kind = "scene" if style == "aerial" else "object"
            row.append(render_scene(sample_scene(rng, kind=kind), rng, style))
        rows.append(np.concatenate(row, axis=1))
    rng = np.random.default_rng([seed, 99])  # texture close-ups in WorldTextures' style (benchmark/tasks.py)
    rows.append(np.concatenate([render_scene(sample_scene(rng, kind="texture"), rng, "noisy") for _ in range(per_row)],
                               axis=1))
    sheet = np.concatenate(rows, axis=0)
    Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST).save(path)
    return path


if __name__ == "__main__":
    import sys

    print(sample_sheet(sys.argv[1] if len(sys.argv) > 1 else "world_samples.png"))
