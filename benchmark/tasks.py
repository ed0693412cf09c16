"""The bundled benchmark's classification tasks: CoOp datasets rendered from the world.

Each task is a dataset of dassl's DATASET_REGISTRY (select it with ``--dataset-config-file
configs/datasets/world_<task>.yaml``). Its images are rendered on first use under
``DATASET.ROOT/<dataset_dir>/images/<class>/`` with CoOp's split file, and re-made when the
world or the task changes (``generator.json``). A class is a world word; what it fixes of a
scene is in ``classes``, everything else is drawn at random, independently (the pretraining
correlations do not hold here). Labels follow ``classes``' order, so with SUBSAMPLE_CLASSES the
first half are the base classes and the rest the new ones (CoOp's rule).

Base-to-new tasks (mirroring the real suite's variety):

| task | like | classes (base + new; held-out) | domain |
|---|---|---|---|
| WorldObjects | Caltech101 | 8 + 8 families (coarse); 9 | photo |
| WorldBreeds | Oxford Pets, Cars | 12 + 12 members of 3 families: same silhouette, one marking apart; 16 | photo |
| WorldTextures | DTD | 8 + 8 textures, as close-ups; 8 | noisy photo |
| WorldAerial | EuroSAT | 8 + 8 background scenes seen from above; 8 | aerial (blue cast) |

Cross-dataset source: WorldNet (ImageNet-like: 25 objects, one member of each family, and 8
textures and 8 scenes, in the photo style); its 25 objects restyled, WorldNetSketch, -Inverted,
-Noisy and -Cluttered, are the domain-generalization targets.

Each base-to-new task also names ``heldout`` classes: world words of the same kind that no
base-to-new task tests on, at least as many as its new classes (the texture and aerial tasks'
held-out words are also WorldNet's textures and scenes, so that none of these is a class of
the transfer targets). ``<Task>Heldout`` datasets hold them;
tuning (tools/tune_bundled.py) measures new-class behaviour on them, never on the test's new
classes. A vocabulary is dealt into base, new and held-out classes in turn (``_deal``), so the
three are alike: validation on the held-out classes stands for the new ones.
"""
from typing import Dict

from PIL import Image

from dassl.data.datasets import DATASET_REGISTRY
from datasets.generated import GeneratedDataset

from . import render, world

# Bump when a task's rendering changes in a way generator_params() does not record (its classes,
# style, counts and first images are recorded, so a change there re-makes its images by itself):
# every task's images are re-made. 5: benchmark v6's fresh test splits (TEST_DRAW); v7's WorldNet
# is recorded by its classes.
TASK_VERSION = 5
# Which draw of each class's test images the test split holds: draw d is images d*n .. d*n+n-1 of
# the class's stream of test renders (n: its test count). Benchmarks v3-v5 read draw 0; v6 reads
# draw 1, a test set no choice has seen (docs/BENCHMARK.md, "Benchmark v6"). Train and val images
# are the same in every draw, so every budget chosen on validation and every trained run stands.
TEST_DRAW = 1


class WorldTask(GeneratedDataset):
    """A classification task in the world: ``classes`` maps each class name (a world word) to
    the scene attributes it fixes; images are rendered in ``style``. ``zero_shot_template`` is
    ZeroshotCLIP's template, as CoOp gives DTD "{} texture." and EuroSAT "a centered satellite
    photo of {}." (the words pretraining captions use for that kind of scene)."""

    classes: Dict[str, Dict[str, str]] = {}
    heldout: Dict[str, Dict[str, str]] = {}
    style = "photo"
    zero_shot_template = "a photo of a {}."
    # 32 train images per class, so that the 16 shots differ between seeds as in CoOp; 120 test
    # images per class: 960 per half of a 16-class task (a standard error of about 1.5 points).
    counts = {"train": 32, "val": 20, "test": 120}
    seed = 0

    def classnames_in_order(self):
        return list(self.classes)

    def render(self, label, classname, rng):
        scene = world.sample_scene(rng, **self.classes[classname])
        return Image.fromarray(render.render_scene(scene, rng, self.style), "RGB")

    @property
    def first_image(self):
        return {"test": TEST_DRAW * self.counts["test"]}

    def generator_params(self):
        return {"world_version": world.WORLD_VERSION, "task_version": TASK_VERSION, "classes": self.classes,
                "style": self.style, "counts": dict(self.counts), "seed": self.seed, "size": render.IMAGE_SIZE,
                "first_image": self.first_image}


def _families(names):
    return {f: {"family": f} for f in names}


def _members(names):
    return {m: {"member": m} for m in names}


def _deal(words):
    """(base, new, held-out): the words dealt in turn, so that each group is a like sample of
    the vocabulary; held-out gets the remainder (at least as many as new)."""
    words = list(words)
    return words[1::3], words[2::3], words[0::3]


_FAMILY_NAMES = list(world.FAMILIES)
_OBJECT_BASE, _OBJECT_NEW, _OBJECT_HELDOUT = _deal(_FAMILY_NAMES)
# Breeds: 3 families; base = markings 0-3 of each, new = markings 4-7; held-out: the members of
# two other families (bird, fish), every marking.
_BREED_FAMILIES = ("dog", "cat", "mammal")
_BREEDS = [world.FAMILIES[f][i] for half in (range(4), range(4, 8)) for f in _BREED_FAMILIES for i in half]
_BREEDS_HELDOUT = list(world.FAMILIES["bird"]) + list(world.FAMILIES["fish"])
_TEXTURE_BASE, _TEXTURE_NEW, _TEXTURE_HELDOUT = _deal(world.TEXTURES)
_SCENE_BASE, _SCENE_NEW, _SCENE_HELDOUT = _deal(world.SCENES)


@DATASET_REGISTRY.register()
class WorldObjects(WorldTask):
    """16 family classes (coarse categories, Caltech-like), objects in the photo domain."""

    dataset_dir = "world_objects"
    classes = _families(_OBJECT_BASE + _OBJECT_NEW)
    heldout = _families(_OBJECT_HELDOUT)


@DATASET_REGISTRY.register()
class WorldBreeds(WorldTask):
    """24 member classes of the dog, cat and mammal families (fine-grained, Pets-like): members of
    a family share its silhouette and differ in one modifier."""

    dataset_dir = "world_breeds"
    classes = _members(_BREEDS)
    heldout = _members(_BREEDS_HELDOUT)
    counts = {"train": 32, "val": 20, "test": 100}  # 1200 per half of its 24 classes


@DATASET_REGISTRY.register()
class WorldTextures(WorldTask):
    """16 texture classes as close-ups in two random colours, photographed with sensor noise
    (DTD-like: textures in the wild, where zero-shot is weak and CoOp gains on base classes and
    loses on new ones; benchmark v5)."""

    dataset_dir = "world_textures"
    zero_shot_template = "a photo of a {} pattern."
    style = "noisy"
    classes = {t: {"kind": "texture", "texture": t} for t in _TEXTURE_BASE + _TEXTURE_NEW}
    heldout = {t: {"kind": "texture", "texture": t} for t in _TEXTURE_HELDOUT}


@DATASET_REGISTRY.register()
class WorldAerial(WorldTask):
    """16 background scenes seen from far above, under a blue colour cast (EuroSAT-like): zero-shot is
    weak, the image features still tell the scenes apart."""

    dataset_dir = "world_aerial"
    zero_shot_template = "a photo of a {} scene."
    classes = {s: {"kind": "scene", "scene": s} for s in _SCENE_BASE + _SCENE_NEW}
    heldout = {s: {"kind": "scene", "scene": s} for s in _SCENE_HELDOUT}
    style = "aerial"


# WorldNet's objects: one member of every family, every marking among them. They are also the
# classes of WorldNet's restyled renderings (domain generalization), as ImageNet-R and -A hold a
# subset of ImageNet's classes.
_NET_OBJECTS = _members([world.FAMILIES[f][i % len(world.MARKINGS)] for i, f in enumerate(_FAMILY_NAMES)])


@DATASET_REGISTRY.register()
class WorldNet(WorldTask):
    """The ImageNet-like source of the cross-dataset and domain-generalization protocols
    (benchmark v7): many kinds of image, all in the photo style. 41 classes: 25 objects (one
    member of every family), 8 texture close-ups and 8 bare scenes. The textures and scenes are
    the texture and aerial tasks' held-out words, so none is a target's class; three of the
    objects are WorldBreeds classes, as some Pets breeds are ImageNet classes. v3-v6 held the 25
    objects alone, from which CoCoOp transferred no better than CoOp (docs/BENCHMARK.md, "(e)'s
    CoCoOp half")."""

    dataset_dir = "world_net"
    classes = {**_NET_OBJECTS,
               **{t: {"kind": "texture", "texture": t} for t in _TEXTURE_HELDOUT},
               **{s: {"kind": "scene", "scene": s} for s in _SCENE_HELDOUT}}
    counts = {"train": 32, "val": 20, "test": 40}  # 1640 test images


def _restyled(name: str, style: str, like: str):
    cls = type(name, (WorldNet,), {
        "__doc__": f"WorldNet's 25 objects in the {style} style ({like}); a domain-generalization target.",
        "dataset_dir": f"world_net_{style}", "style": style, "classes": _NET_OBJECTS, "__module__": __name__,
    })
    return DATASET_REGISTRY.register()(cls)


WorldNetSketch = _restyled("WorldNetSketch", "sketch", "ImageNet-Sketch-like")
WorldNetInverted = _restyled("WorldNetInverted", "inverted", "ImageNet-R-like")
WorldNetNoisy = _restyled("WorldNetNoisy", "noisy", "a corruption shift")
WorldNetCluttered = _restyled("WorldNetCluttered", "cluttered", "ImageNet-A-like")

BASE2NEW_TASKS = (WorldObjects, WorldBreeds, WorldTextures, WorldAerial)
DOMAIN_SHIFTS = (WorldNetSketch, WorldNetInverted, WorldNetNoisy, WorldNetCluttered)


def _heldout_task(task):
    cls = type(f"{task.__name__}Heldout", (task,), {
        "__doc__": f"{task.__name__}'s held-out classes (validation only: tuning measures new-class "
                   "behaviour here, never on the test's new classes).",
        "dataset_dir": f"{task.dataset_dir}_heldout", "classes": task.heldout, "heldout": {},
        "__module__": __name__,
    })
    return DATASET_REGISTRY.register()(cls)


HELDOUT_TASKS = tuple(_heldout_task(t) for t in BASE2NEW_TASKS)
