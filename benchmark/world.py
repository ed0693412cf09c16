"""The procedural image-caption world of the bundled benchmark (all of it synthetic).

A scene is one object on a background scene. The object is a *member* of a *family* (a kind,
like a breed of a species): the family fixes the silhouette, the member adds a marking to it
(an eye spot, a band, a rim, ...). The object also has a colour, a size and a position. Other
scenes are a texture close-up or a bare background scene. The words of the world
(``VOCABULARY``, 308 of them) are:

- 25 family nouns and 200 member nouns (8 per family): the objects;
  a family has its own silhouette, a member of it adds its own marking;
- 20 colours, 24 textures, 24 background scenes, 5 sizes, 5 positions;
- 5 looks of a pretraining image (dark, bright, blurry, noisy, sketch).

The names are ordinary English words (so CLIP's tokenizer splits them into few tokens), but
they label synthetic drawings: a "robin" is the bird family's silhouette without a marking,
nothing like a bird.

Pretraining captions (``caption``) name the object (member or family) and a random subset of
its attributes; as on the web, many start "a photo of", so the zero-shot template "a photo of a
{}." is familiar. As on the web too, pretraining scenes are correlated: each family has
habitat scenes and typical colours that it shows more often than chance. The classification
tasks (benchmark/tasks.py) render in other *styles* and break those correlations; rendering is
in benchmark/render.py.

Everything is deterministic: ``sample_scene`` and the renderer take a ``numpy.random.Generator``.
"""
from typing import Dict, List, Optional

import numpy as np

WORLD_VERSION = 4  # bump when the vocabulary, pretraining scenes or captions change

# ----------------------------------------------------------------------------- vocabulary
# family -> its 8 members; member i of every family carries MARKINGS[i].
FAMILIES: Dict[str, tuple] = {
    "bird": ("robin", "sparrow", "eagle", "parrot", "owl", "crow", "pigeon", "swan"),
    "fish": ("salmon", "tuna", "trout", "shark", "cod", "carp", "herring", "perch"),
    "tree": ("oak", "pine", "maple", "birch", "willow", "cedar", "palm", "elm"),
    "flower": ("rose", "tulip", "daisy", "lily", "orchid", "poppy", "lotus", "iris"),
    "dog": ("poodle", "beagle", "boxer", "pug", "husky", "collie", "terrier", "bulldog"),
    "cat": ("tabby", "siamese", "persian", "sphynx", "bengal", "ragdoll", "manx", "burmese"),
    "car": ("sedan", "coupe", "jeep", "taxi", "van", "truck", "limo", "wagon"),
    "boat": ("canoe", "kayak", "yacht", "ferry", "raft", "barge", "dinghy", "tugboat"),
    "plane": ("jet", "glider", "biplane", "seaplane", "airliner", "bomber", "drone", "blimp"),
    "fruit": ("apple", "pear", "plum", "peach", "cherry", "mango", "lemon", "grape"),
    "insect": ("ant", "bee", "wasp", "beetle", "moth", "butterfly", "ladybug", "cricket"),
    "building": ("cabin", "cottage", "castle", "tower", "barn", "hut", "villa", "temple"),
    "tool": ("hammer", "wrench", "saw", "drill", "chisel", "axe", "shovel", "rake"),
    "instrument": ("guitar", "violin", "drum", "flute", "piano", "harp", "trumpet", "cello"),
    "vessel": ("mug", "jar", "bottle", "vase", "bowl", "kettle", "teapot", "pitcher"),
    "furniture": ("chair", "table", "sofa", "bed", "desk", "stool", "bench", "shelf"),
    "clothing": ("hat", "shirt", "coat", "glove", "sock", "scarf", "boot", "dress"),
    "toy": ("kite", "doll", "yoyo", "puzzle", "robot", "teddy", "rattle", "whistle"),
    "gem": ("ruby", "emerald", "sapphire", "pearl", "opal", "topaz", "jade", "quartz"),
    "vehicle": ("bicycle", "scooter", "motorcycle", "tractor", "tram", "bus", "train", "tank"),
    "reptile": ("snake", "lizard", "turtle", "frog", "crocodile", "gecko", "iguana", "toad"),
    "mammal": ("horse", "cow", "sheep", "goat", "pig", "deer", "rabbit", "mouse"),
    "shellfish": ("crab", "lobster", "shrimp", "octopus", "squid", "jellyfish", "starfish", "clam"),
    "pastry": ("bagel", "muffin", "cookie", "pretzel", "donut", "waffle", "pancake", "croissant"),
    "utensil": ("spoon", "fork", "knife", "ladle", "whisk", "spatula", "tongs", "grater"),
}
# The marking of member i of each family: a part of the silhouette in a contrasting shade
# (benchmark/render.py draws them), as breeds differ in their markings.
MARKINGS = ("none", "eye", "band", "cap", "stripe", "rim", "spots", "half")
MEMBER_FAMILY = {member: family for family, members in FAMILIES.items() for member in members}
MEMBER_MARKING = {member: MARKINGS[i] for members in FAMILIES.values() for i, member in enumerate(members)}

# colour -> RGB (0..255)
COLORS = {
    "red": (215, 35, 35), "maroon": (120, 20, 35), "orange": (245, 135, 25), "yellow": (240, 215, 40),
    "lime": (165, 230, 40), "green": (35, 150, 55), "olive": (120, 125, 30), "teal": (20, 130, 130),
    "cyan": (60, 215, 230), "blue": (40, 80, 225), "navy": (20, 30, 110), "purple": (125, 45, 185),
    "violet": (190, 130, 235), "magenta": (225, 40, 185), "pink": (250, 160, 200), "brown": (125, 75, 35),
    "beige": (225, 205, 160), "white": (245, 245, 245), "gray": (128, 128, 128), "black": (20, 20, 20),
}
TEXTURES = (
    "plain", "striped", "dotted", "checkered", "gridded", "wavy", "zigzag", "speckled", "ringed", "faded",
    "slanted", "crosshatched", "spotted", "pinstriped", "banded", "bricked", "plaid", "woven", "rippled",
    "marbled", "dashed", "swirly", "mottled", "studded",
)
# scene -> (colour of the first tone, colour of the second tone, texture of the mix)
SCENES = {
    "grass": ("green", "olive", "speckled"), "meadow": ("lime", "yellow", "dotted"),
    "forest": ("green", "brown", "spotted"), "field": ("yellow", "olive", "striped"),
    "desert": ("beige", "orange", "wavy"), "sand": ("beige", "white", "speckled"),
    "beach": ("beige", "cyan", "banded"), "water": ("blue", "cyan", "wavy"),
    "ocean": ("navy", "blue", "rippled"), "ice": ("white", "cyan", "crosshatched"),
    "snow": ("white", "gray", "speckled"), "sky": ("cyan", "white", "faded"),
    "cloud": ("white", "gray", "mottled"), "night": ("black", "navy", "dotted"),
    "sunset": ("orange", "magenta", "faded"), "lava": ("red", "black", "marbled"),
    "rock": ("gray", "brown", "mottled"), "mud": ("brown", "olive", "mottled"),
    "swamp": ("olive", "teal", "swirly"), "road": ("gray", "black", "dashed"),
    "tile": ("white", "gray", "checkered"), "carpet": ("maroon", "purple", "woven"),
    "wood": ("brown", "beige", "banded"), "brick": ("maroon", "red", "bricked"),
}
# size -> radius range as a fraction of the image side
SIZES = {"tiny": (0.16, 0.20), "small": (0.21, 0.26), "medium": (0.27, 0.32), "large": (0.33, 0.38),
         "huge": (0.39, 0.45)}
POSITIONS = ("left", "right", "top", "bottom", "center")
# How a pretraining image looks (benchmark/render.py applies it) and the caption words that say
# so: as web captions ("a blurry photo of", "a sketch of"), they teach the text encoder that the
# words before the noun describe the image's style, which is what prompt learning then tunes.
LOOKS = {"plain": "a photo of", "dark": "a dark photo of", "bright": "a bright photo of",
         "blurry": "a blurry photo of", "noisy": "a noisy photo of", "sketch": "a sketch of"}
PRETRAIN_LOOK_P = (0.5, 0.1, 0.1, 0.1, 0.1, 0.1)
LOOK_SAID_P = 0.8  # a caption of a non-plain look names it with this probability
ATTRIBUTES = ("member", "color", "texture", "scene", "size", "position", "look")
VOCABULARY = tuple(
    list(FAMILIES) + list(MEMBER_FAMILY) + list(COLORS) + list(TEXTURES) + list(SCENES) + list(SIZES)
    + list(POSITIONS) + [look for look in LOOKS if look != "plain"]
)
assert len(set(VOCABULARY)) == len(VOCABULARY), "a word has two meanings in the world"

# Web-like correlations of pretraining: a family shows one of its 3 habitat scenes with
# probability HABITAT_P (else any scene), one of its 4 typical colours with probability TYPICAL_P.
HABITAT_P = 0.6
TYPICAL_P = 0.6
CORRELATION_SEED = 12345


def _family_preferences():
    rng = np.random.default_rng(CORRELATION_SEED)
    scenes, colors = list(SCENES), list(COLORS)
    habitats = {f: tuple(scenes[i] for i in rng.choice(len(scenes), 3, replace=False)) for f in FAMILIES}
    typical = {f: tuple(colors[i] for i in rng.choice(len(colors), 4, replace=False)) for f in FAMILIES}
    return habitats, typical


HABITATS, TYPICAL_COLORS = _family_preferences()


# ----------------------------------------------------------------------------- scenes
KINDS = ("object", "texture", "scene")  # an object on a background; a texture close-up; a bare scene
PRETRAIN_KIND_P = (0.76, 0.12, 0.12)


def _pick(rng, values):
    values = list(values)
    return values[rng.integers(len(values))]


def sample_scene(rng, correlated: bool = False, **fixed) -> Dict[str, str]:
    """A random scene {kind, member, color, texture, scene, size, position}.

    ``fixed`` attributes are kept; ``family=...`` fixes the family and draws a member of it.
    ``correlated``: pretraining's mixture of kinds (PRETRAIN_KIND_P) and of looks
    (PRETRAIN_LOOK_P), and its family-habitat and family-colour correlations. Otherwise the kind
    is "object" unless fixed, the look "plain", and every attribute is uniform and independent
    (the tasks, whose render style sets the domain). Objects are plain-coloured (texture "plain"); the
    texture of a texture close-up is drawn from TEXTURES.
    """
    unknown = set(fixed) - set(ATTRIBUTES) - {"family", "kind"}
    if unknown:
        raise ValueError(f"unknown scene attributes {sorted(unknown)}; valid: "
                         f"{sorted(ATTRIBUTES + ('family', 'kind'))}")
    fixed = dict(fixed)
    family = fixed.pop("family", None)
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    if "member" in fixed:
        family = MEMBER_FAMILY.get(fixed["member"], family)
    family = family or _pick(rng, FAMILIES)
    kind = fixed.pop("kind", None) or (KINDS[rng.choice(len(KINDS), p=PRETRAIN_KIND_P)] if correlated else "object")
    scene = {"kind": kind, "member": _pick(rng, FAMILIES[family])}
    if correlated and rng.random() < TYPICAL_P:
        scene["color"] = _pick(rng, TYPICAL_COLORS[family])
    else:
        scene["color"] = _pick(rng, COLORS)
    scene["texture"] = _pick(rng, TEXTURES) if kind == "texture" else "plain"
    if correlated and rng.random() < HABITAT_P:
        scene["scene"] = _pick(rng, HABITATS[family])
    else:
        scene["scene"] = _pick(rng, SCENES)
    scene["size"] = _pick(rng, SIZES)
    scene["position"] = _pick(rng, POSITIONS)
    scene["look"] = list(LOOKS)[rng.choice(len(LOOKS), p=PRETRAIN_LOOK_P)] if correlated else "plain"
    if scene["look"] == "sketch" and kind != "object":  # only objects have outlines to sketch
        scene["look"] = "plain"
    scene.update(fixed)
    for key, value in scene.items():
        if value not in _VALUES[key]:
            raise ValueError(f"unknown {key} {value!r}")
    return scene


_VALUES = {"kind": KINDS, "member": MEMBER_FAMILY, "color": COLORS, "texture": TEXTURES, "scene": SCENES,
           "size": SIZES, "position": POSITIONS, "look": LOOKS}

# How often a caption names each attribute (the object always: as its member word with
# probability MEMBER_P, else as its family word).
MENTION_P = {"size": 0.25, "color": 0.35, "scene": 0.2, "position": 0.2}
MEMBER_P = 0.7
# How often a caption of a plain-looking image starts "a photo of ...", as web captions often
# do: the zero-shot template "a photo of a {}." and CoOp's context init "a photo of a" are then
# words the CLIP knows.
PHOTO_P = 0.4


def caption(scene: Dict[str, str], rng, noun_noise: float = 0.0, texture_noise: float = 0.0) -> str:
    """A caption of a scene, after its look's words (LOOKS: "a blurry photo of " ...) with
    probability LOOK_SAID_P, or "a photo of " with probability PHOTO_P for a plain look.

    object:  "a [size] [colour] <member or family> [on <scene>] [at the <position>]."
    texture: "a [colour] <texture> pattern."
    scene:   "a <scene> scene."

    noun_noise (0.3 for the shipped world CLIP of benchmark v4; at 0 nothing more is drawn):
    with this probability an object's noun is another of its level, a member another member of
    the same family, a family another family (captions that misname fine-grained things; drawn
    after the caption's own draws). texture_noise (0.5 shipped; at 0 nothing more is drawn):
    the same for a texture caption, which then names another texture (words weakly tied to what
    they name, like DTD's class names for real CLIP).
    """
    look = scene.get("look", "plain")
    said = rng.random() < (PHOTO_P if look == "plain" else LOOK_SAID_P)
    prefix = LOOKS[look] + " " if said else ""
    if scene["kind"] == "scene":
        return f"{prefix}a {scene['scene']} scene."
    say = {k: rng.random() < p for k, p in MENTION_P.items()}
    if scene["kind"] == "texture":
        texture = scene["texture"]
        if texture_noise > 0 and rng.random() < texture_noise:  # the caption's last draw
            texture = _another(texture, TEXTURES, rng)
        return f"{prefix}a {scene['color'] + ' ' if say['color'] else ''}{texture} pattern."
    noun = scene["member"] if rng.random() < MEMBER_P else MEMBER_FAMILY[scene["member"]]
    if noun_noise > 0 and rng.random() < noun_noise:  # the caption's last draw
        level = FAMILIES[MEMBER_FAMILY[noun]] if noun in MEMBER_FAMILY else FAMILIES  # a member's siblings, or the families
        noun = _another(noun, level, rng)
    words = ["a"]
    words += [scene[k] for k in ("size", "color") if say[k]]
    words.append(noun)
    if say["scene"]:
        words += ["on", scene["scene"]]
    if say["position"]:
        words += ["at the", scene["position"]]
    return prefix + " ".join(words) + "."


def _another(word: str, words, rng) -> str:
    """One of ``words`` other than ``word``, drawn uniformly (one draw)."""
    others = [w for w in words if w != word]
    return others[rng.integers(len(others))]


# What the auxiliary heads of pretraining predict from an image (benchmark/world_clip.py), and
# for which kinds of scene each is defined.
AUX_TARGETS = {"family": ("object",), "member": ("object",), "color": ("object", "texture"),
               "texture": ("texture",), "scene": ("object", "scene"), "size": ("object",),
               "position": ("object",), "look": KINDS}


def aux_labels(scenes) -> Dict[str, List[int]]:
    """{target: [label index, or -100 where undefined]} of a batch of scenes (AUX_TARGETS)."""
    values = {"family": list(FAMILIES), "member": list(MEMBER_FAMILY), "color": list(COLORS),
              "texture": list(TEXTURES), "scene": list(SCENES), "size": list(SIZES), "position": list(POSITIONS),
              "look": list(LOOKS)}
    labels = {}
    for target, kinds in AUX_TARGETS.items():
        index = {v: i for i, v in enumerate(values[target])}
        labels[target] = [
            index[MEMBER_FAMILY[s["member"]] if target == "family" else s[target]] if s["kind"] in kinds else -100
            for s in scenes
        ]
    return labels


def longest_caption() -> str:
    """A caption with every attribute, each of its longest word (tokenizer length checks)."""
    from trainers.clip_backbone import _tokenizer

    def longest(words):
        return max(words, key=lambda w: len(_tokenizer.encode(w)))

    return (f"{max(LOOKS.values(), key=lambda w: len(_tokenizer.encode(w)))} a {longest(SIZES)} {longest(COLORS)} {longest(list(FAMILIES) + list(MEMBER_FAMILY))} on "
            f"{longest(SCENES)} at the {longest(POSITIONS)}.")


def words_of(kind: str) -> List[str]:
    """The world's words of one kind: family, member, color, texture, scene, size, position, look."""
    table = {"family": FAMILIES, "member": MEMBER_FAMILY, "color": COLORS, "texture": TEXTURES,
             "scene": SCENES, "size": SIZES, "position": POSITIONS,
             "look": [look for look in LOOKS if look != "plain"]}
    if kind not in table:
        raise ValueError(f"unknown word kind {kind!r}; choose from {sorted(table)}")
    return list(table[kind])


def attribute_of(word: str) -> Optional[str]:
    """Which kind a world word is (None for words outside the world)."""
    for kind in ("family", "member", "color", "texture", "scene", "size", "position", "look"):
        if word in words_of(kind):
            return kind
    return None
