"""The CoOp dataset loaders against tiny files in their real folder layouts.

One module-scoped root holds every dataset: a few placeholder images per class, the raw
annotation files where CoOp builds the split from them, and a tiny split json where the real
dataset ships one. Checks: class counts and names (with CoOp's name fixes), split sizes,
few-shot counts, per-seed determinism and the cache, base/new classes, and the clear errors.
"""
import json
import os
import pickle
import random
from collections import Counter

import numpy as np
import pytest
from scipy.io import savemat

import datasets  # noqa: F401  (registers the datasets)
from dassl.config import get_cfg_default
from dassl.data.datasets import Datum, build_dataset
from datasets import fetch_splits
from datasets.common import CoOpDataset

# A valid 1x1 PNG; content does not matter to the loaders (the name may end in .jpg).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
    "9c63f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(PNG)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def folder_per_class(image_dir, classes, n):
    """image_dir/<class>/<i>.jpg; returns {class: [relative paths]}."""
    out = {}
    for c in classes:
        out[c] = [f"{c}/{i}.jpg" for i in range(n)]
        for rel in out[c]:
            touch(os.path.join(image_dir, rel))
    return out


def split_json(path, files, names, counts=(3, 2, 2)):
    """A CoOp split json: per class counts[0] train, counts[1] val, the rest test."""
    split = {"train": [], "val": [], "test": []}
    for label, (c, rels) in enumerate(files.items()):
        a, b = counts[0], counts[0] + counts[1]
        for key, part in (("train", rels[:a]), ("val", rels[a:b]), ("test", rels[b:])):
            split[key] += [[r, label, names.get(c, c)] for r in part]
    write(path, json.dumps(split))


WNIDS = {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark"}
CLASSNAMES_TXT = "".join(f"{k} {v}\n" for k, v in WNIDS.items())


def make_layouts(root):
    j = os.path.join
    # Caltech101 from raw folders: ignored folders, renamed classes; 10 images -> 5/2/3.
    folder_per_class(j(root, "caltech-101", "101_ObjectCategories"),
                     ["airplanes", "ant", "BACKGROUND_Google", "Faces", "Faces_easy", "Leopards"], 10)
    # DTD and Food101 with a split json (3 train / 2 val / 2 test per class).
    files = folder_per_class(j(root, "dtd", "images"), ["banded", "blotchy", "braided"], 7)
    split_json(j(root, "dtd", "split_zhou_DescribableTextures.json"), files, {})
    files = folder_per_class(j(root, "food-101", "images"), ["apple_pie", "baby_back_ribs"], 7)
    split_json(j(root, "food-101", "split_zhou_Food101.json"), files, {})
    # EuroSAT from raw folders (NEW_CNAMES).
    folder_per_class(j(root, "eurosat", "2750"), ["AnnualCrop", "Forest", "SeaLake"], 10)
    # OxfordPets from annotations: 5 trainval (-> 4 train / 1 val) and 1 test per breed.
    lines = {"trainval": [], "test": []}
    for label, breed in enumerate(["Abyssinian", "american_bulldog"], 1):
        for i in range(6):
            touch(j(root, "oxford_pets", "images", f"{breed}_{i}.jpg"))
            lines["trainval" if i < 5 else "test"].append(f"{breed}_{i} {label} 1 1\n")
    for name, ls in lines.items():
        write(j(root, "oxford_pets", "annotations", f"{name}.txt"), "".join(ls))
    # StanfordCars from .mat files: 5 trainval + 2 test per model.
    meta = np.zeros((1, 2), dtype=object)
    meta[0, 0], meta[0, 1] = "AM General Hummer SUV 2000", "Tesla Model S Sedan 2012"
    os.makedirs(j(root, "stanford_cars", "devkit"))
    savemat(j(root, "stanford_cars", "devkit", "cars_meta.mat"), {"class_names": meta})
    for part, n, mat in (("cars_train", 5, j("devkit", "cars_train_annos.mat")), ("cars_test", 2, "cars_test_annos_withlabels.mat")):
        annos = np.zeros((1, 2 * n), dtype=[("fname", "O"), ("class", "O")])
        for i in range(2 * n):
            annos[0, i] = (f"{i:05d}.jpg", np.array([[i % 2 + 1]], dtype=np.uint8))
            touch(j(root, "stanford_cars", part, f"{i:05d}.jpg"))
        savemat(j(root, "stanford_cars", mat), {"annotations": annos})
    # OxfordFlowers: imagelabels.mat + cat_to_name.json, 10 images per class -> 5/2/3.
    labels = [1] * 10 + [2] * 10
    for i in range(len(labels)):
        touch(j(root, "oxford_flowers", "jpg", f"image_{i + 1:05d}.jpg"))
    savemat(j(root, "oxford_flowers", "imagelabels.mat"), {"labels": np.array([labels])})
    write(j(root, "oxford_flowers", "cat_to_name.json"), json.dumps({"1": "pink primrose", "2": "hard-leaved pocket orchid"}))
    # FGVCAircraft: variants.txt + images_variant_*.txt, 4/2/2 per variant.
    variants = ["707-320", "A300B4", "Cessna 172"]
    write(j(root, "fgvc_aircraft", "variants.txt"), "\n".join(variants) + "\n")
    k = 0
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        rows = []
        for v in variants:
            for _ in range(n):
                k += 1
                touch(j(root, "fgvc_aircraft", "images", f"{1000000 + k}.jpg"))
                rows.append(f"{1000000 + k} {v}\n")
        write(j(root, "fgvc_aircraft", f"images_variant_{split}.txt"), "".join(rows))
    # SUN397 from ClassName.txt + Training_01/Testing_01: 5 (-> 4/1) + 2 per class.
    scenes = ["/a/abbey", "/a/apartment_building/outdoor"]
    write(j(root, "sun397", "ClassName.txt"), "\n".join(scenes) + "\n")
    for name, rng in (("Training_01.txt", range(5)), ("Testing_01.txt", range(5, 7))):
        rows = [f"{s}/sun_{i}.jpg\n" for s in scenes for i in rng]
        for r in rows:
            touch(j(root, "sun397", "SUN397", r.strip()[1:]))
        write(j(root, "sun397", name), "".join(rows))
    # UCF101 from ucfTrainTestlist: 5 (-> 4/1) + 2 videos per action.
    write(j(root, "ucf101", "ucfTrainTestlist", "classInd.txt"), "1 ApplyEyeMakeup\n2 Basketball\n")
    for name, rng, suffix in (("trainlist01.txt", range(5), " 1"), ("testlist01.txt", range(5, 7), "")):
        rows = []
        for action, folder in (("ApplyEyeMakeup", "Apply_Eye_Makeup"), ("Basketball", "Basketball")):
            for i in rng:
                touch(j(root, "ucf101", "UCF-101-midframes", folder, f"v_{action}_g{i:02d}_c01.jpg"))
                rows.append(f"{action}/v_{action}_g{i:02d}_c01.avi{suffix}\n")
        write(j(root, "ucf101", "ucfTrainTestlist", name), "".join(rows))
    # ImageNet: 4 train / 2 val images per class; the variants.
    write(j(root, "imagenet", "classnames.txt"), CLASSNAMES_TXT)
    for split, n in (("train", 4), ("val", 2)):
        folder_per_class(j(root, "imagenet", "images", split), WNIDS, n)
    write(j(root, "imagenetv2", "classnames.txt"), CLASSNAMES_TXT)
    folder_per_class(j(root, "imagenetv2", "imagenetv2-matched-frequency-format-val"), ["0", "1", "2"], 2)
    folder_per_class(j(root, "imagenet-sketch", "images"), WNIDS, 2)  # no classnames.txt: ImageNet's
    write(j(root, "imagenet-adversarial", "classnames.txt"), CLASSNAMES_TXT)
    folder_per_class(j(root, "imagenet-adversarial", "imagenet-a"), ["n01443537", "n01484850"], 2)
    write(j(root, "imagenet-adversarial", "imagenet-a", "README.txt"), "not a class\n")
    write(j(root, "imagenet-rendition", "classnames.txt"), CLASSNAMES_TXT)
    folder_per_class(j(root, "imagenet-rendition", "imagenet-r"), ["n01440764"], 3)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    make_layouts(str(path))
    return str(path)


def make_cfg(root, name, num_shots=-1, seed=1, subsample="all"):
    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample  # launch.extend_cfg adds this key
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.SEED = seed
    return cfg


def build(root, name, **kw):
    cfg = make_cfg(root, name, **kw)
    random.seed(cfg.SEED)  # train.py's set_random_seed(cfg.SEED)
    return build_dataset(cfg)


# name: (class names by label, (train, val, test) sizes, split file or None)
SPECS = {
    "Caltech101": (["face", "leopard", "airplane", "ant"], (20, 8, 12), "caltech-101/split_zhou_Caltech101.json"),
    "DescribableTextures": (["banded", "blotchy", "braided"], (9, 6, 6), "dtd/split_zhou_DescribableTextures.json"),
    "Food101": (["apple_pie", "baby_back_ribs"], (6, 4, 4), "food-101/split_zhou_Food101.json"),
    "EuroSAT": (["Annual Crop Land", "Forest", "Sea or Lake"], (15, 6, 9), "eurosat/split_zhou_EuroSAT.json"),
    "OxfordPets": (["abyssinian", "american_bulldog"], (8, 2, 2), "oxford_pets/split_zhou_OxfordPets.json"),
    "StanfordCars": (["2000 AM General Hummer SUV", "2012 Tesla Model S Sedan"], (8, 2, 4), "stanford_cars/split_zhou_StanfordCars.json"),
    "OxfordFlowers": (["pink primrose", "hard-leaved pocket orchid"], (10, 4, 6), "oxford_flowers/split_zhou_OxfordFlowers.json"),
    "FGVCAircraft": (["707-320", "A300B4", "Cessna 172"], (12, 6, 6), None),
    "SUN397": (["abbey", "outdoor apartment_building"], (8, 2, 4), "sun397/split_zhou_SUN397.json"),
    "UCF101": (["Apply_Eye_Makeup", "Basketball"], (8, 2, 4), "ucf101/split_zhou_UCF101.json"),
    "ImageNet": (["tench", "goldfish", "great white shark"], (12, 6, 6), "imagenet/preprocessed.pkl"),
}
VARIANTS = {
    "ImageNetV2": (["tench", "goldfish", "great white shark"], 6),
    "ImageNetSketch": (["tench", "goldfish", "great white shark"], 6),
    "ImageNetA": (["goldfish", "great white shark"], 4),
    "ImageNetR": (["tench"], 3),
}


def sizes(ds):
    return len(ds.train_x), len(ds.val), len(ds.test)


@pytest.mark.parametrize("name", list(SPECS))
def test_full_dataset_and_split_file(root, name):
    names, expected_sizes, split_file = SPECS[name]
    ds = build(root, name)
    assert ds.classnames == names and ds.num_classes == len(names)
    assert sizes(ds) == expected_sizes
    assert all(isinstance(x, Datum) and os.path.isfile(x.impath) for x in ds.train_x + ds.val + ds.test)
    assert {x.label for x in ds.test} == set(range(len(names)))
    if split_file:  # built from raw files (or shipped); read back identically
        assert os.path.isfile(os.path.join(root, split_file))
        again = build(root, name, seed=7)
        assert [(x.impath, x.label, x.classname) for x in again.train_x] == [(x.impath, x.label, x.classname) for x in ds.train_x]
    if name == "ImageNet":
        assert ds.val is ds.test


@pytest.mark.parametrize("name", list(VARIANTS))
def test_imagenet_variants(root, name):
    names, n = VARIANTS[name]
    ds = build(root, name)
    assert ds.classnames == names and len(ds.test) == n and ds.train_x == ds.test and ds.val is None


@pytest.mark.parametrize("name", list(SPECS))
def test_fewshot_counts_and_cache(root, name):
    full = build(root, name)
    ds = build(root, name, num_shots=2, seed=1)
    assert Counter(x.label for x in ds.train_x) == {c: 2 for c in range(full.num_classes)}
    if name != "ImageNet":
        val_avail = Counter(x.label for x in full.val)
        assert Counter(x.label for x in ds.val) == {c: min(2, n) for c, n in val_avail.items()}
    assert os.path.isfile(os.path.join(ds.split_fewshot_dir, "shot_2-seed_1.pkl"))
    assert len(ds.test) == len(full.test)


def test_fewshot_determinism_and_cache_reuse(root):
    cache = os.path.join(root, "dtd", "split_fewshot", "shot_3-seed_5.pkl")
    first = [x.impath for x in build(root, "DescribableTextures", num_shots=3, seed=5).train_x]
    assert os.path.isfile(cache)
    random.seed(12345)  # the cache, not the random state, decides
    cfg = make_cfg(root, "DescribableTextures", num_shots=3, seed=5)
    assert [x.impath for x in build_dataset(cfg).train_x] == first
    os.remove(cache)  # same seed, fresh sampling: same subset
    assert [x.impath for x in build(root, "DescribableTextures", num_shots=3, seed=5).train_x] == first
    others = {tuple(x.impath for x in build(root, "DescribableTextures", num_shots=3, seed=s).train_x) for s in range(20, 26)}
    assert len(others | {tuple(first)}) > 1
    with open(cache, "rb") as f:
        assert set(pickle.load(f)) == {"train", "val"}


@pytest.mark.parametrize("name,n_base", [("Caltech101", 2), ("FGVCAircraft", 2), ("ImageNet", 2), ("EuroSAT", 2)])
def test_subsample_base_new(root, name, n_base):
    full = build(root, name)
    base = build(root, name, subsample="base")
    new = build(root, name, subsample="new")
    assert base.classnames == full.classnames[:n_base]
    assert new.classnames == full.classnames[n_base:]
    for ds, n in ((base, n_base), (new, full.num_classes - n_base)):
        assert ds.num_classes == n
        for part in (ds.train_x, ds.val, ds.test):
            assert {x.label for x in part} == set(range(n))
    assert len(base.test) + len(new.test) == len(full.test)
    fs_new = build(root, name, subsample="new", num_shots=2, seed=1)
    assert Counter(x.label for x in fs_new.train_x) == {c: 2 for c in range(full.num_classes - n_base)}
    # Tuning's split of the base classes: base_fit + base_heldout = base, disjoint, new untouched.
    fit, held = build(root, name, subsample="base_fit"), build(root, name, subsample="base_heldout")
    assert fit.classnames + held.classnames == base.classnames
    assert fit.classnames == base.classnames[: -(-n_base // 2)]
    assert {x.label for x in held.test} == set(range(held.num_classes))


def test_eurosat_raw_names_in_split_are_fixed(tmp_path):
    folder_per_class(str(tmp_path / "eurosat" / "2750"), ["AnnualCrop", "SeaLake"], 4)
    split_json(str(tmp_path / "eurosat" / "split_zhou_EuroSAT.json"),
               {c: [f"{c}/{i}.jpg" for i in range(3)] for c in ("AnnualCrop", "SeaLake")}, {}, (1, 1))
    assert build(str(tmp_path), "EuroSAT").classnames == ["Annual Crop Land", "Sea or Lake"]


# ------------------------------------------------------------------------------- errors
def test_missing_dataset_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected DATASET.ROOT/caltech-101; see docs/DATASETS.md"):
        build(str(tmp_path), "Caltech101")


def test_missing_split_that_cannot_be_built(tmp_path):
    folder_per_class(str(tmp_path / "ucf101" / "UCF-101-midframes"), ["Basketball"], 3)
    with pytest.raises(FileNotFoundError, match=r"split_zhou_UCF101.json.*classInd.txt.*fetch_splits"):
        build(str(tmp_path), "UCF101")


def test_split_lists_missing_image(tmp_path):
    files = folder_per_class(str(tmp_path / "food-101" / "images"), ["pho"], 3)
    split_json(str(tmp_path / "food-101" / "split_zhou_Food101.json"), files, {}, (1, 1))
    os.remove(tmp_path / "food-101" / "images" / "pho" / "2.jpg")
    with pytest.raises(FileNotFoundError, match=r"split_zhou_Food101.json lists 1 of 3 images that do not exist, "
                                                r"e.g. .*pho/2.jpg; found 1 class with 2 images each"):
        build(str(tmp_path), "Food101")


def test_empty_or_partial_folders_write_nothing(tmp_path):
    """CoOp would write an empty split (and fail later on max() of an empty sequence)."""
    (tmp_path / "eurosat" / "2750").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"2750 is empty or incomplete: no class folders.*docs/DATASETS.md"):
        build(str(tmp_path), "EuroSAT", num_shots=1)
    folder_per_class(str(tmp_path / "eurosat" / "2750"), ["AnnualCrop", "Forest"], 5)
    folder_per_class(str(tmp_path / "eurosat" / "2750"), ["SeaLake"], 2)
    with pytest.raises(FileNotFoundError, match=r"3 classes with 2 to 5 images each, and each class needs at least 4"):
        build(str(tmp_path), "EuroSAT", num_shots=1)
    # Annotations present, images not yet extracted (OxfordPets builds its split from them).
    write(str(tmp_path / "oxford_pets" / "annotations" / "trainval.txt"), "Abyssinian_1 1 1 1\n")
    write(str(tmp_path / "oxford_pets" / "annotations" / "test.txt"), "Abyssinian_2 1 1 1\n")
    os.makedirs(tmp_path / "oxford_pets" / "images")
    with pytest.raises(FileNotFoundError, match=r"OxfordPets: the annotations name images that are not in "
                                                 r".*oxford_pets/images \(0 images found there\)"):
        build(str(tmp_path), "OxfordPets")
    written = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith((".json", ".pkl"))]
    assert written == []


def test_too_few_images_for_num_shots(root):
    with pytest.raises(ValueError, match=r"NUM_SHOTS=16.*'banded' \(label 0\) has 3.*at most 3"):
        build(root, "DescribableTextures", num_shots=16)
    assert not os.path.exists(os.path.join(root, "dtd", "split_fewshot", "shot_16-seed_1.pkl"))


def test_bad_subsample_value(root):
    with pytest.raises(ValueError, match=r"SUBSAMPLE_CLASSES must be one of all, base, new, base_fit, base_heldout, got 'bse'"):
        build(root, "DescribableTextures", subsample="bse")


def test_malformed_split_json_names_file(tmp_path):
    folder_per_class(str(tmp_path / "dtd" / "images"), ["banded"], 3)
    write(str(tmp_path / "dtd" / "split_zhou_DescribableTextures.json"), '{"train": [["banded/0.jpg", 0, ')
    with pytest.raises(ValueError, match=r"malformed split file .*split_zhou_DescribableTextures.json"):
        build(str(tmp_path), "DescribableTextures")
    write(str(tmp_path / "dtd" / "split_zhou_DescribableTextures.json"), '{"train": [["banded/0.jpg"]], "val": [], "test": []}')
    with pytest.raises(ValueError, match=r"malformed split file .*bad 'train' entry"):
        build(str(tmp_path), "DescribableTextures")


def test_malformed_fewshot_cache_names_file(tmp_path):
    files = folder_per_class(str(tmp_path / "dtd" / "images"), ["banded"], 7)
    split_json(str(tmp_path / "dtd" / "split_zhou_DescribableTextures.json"), files, {})
    cache = tmp_path / "dtd" / "split_fewshot" / "shot_1-seed_1.pkl"
    write(str(cache), "truncated")
    with pytest.raises(ValueError, match=r"malformed few-shot cache .*shot_1-seed_1.pkl.*Delete it"):
        build(str(tmp_path), "DescribableTextures", num_shots=1)


def test_atomic_cache_write_leaves_no_partial_file(tmp_path, monkeypatch):
    files = folder_per_class(str(tmp_path / "dtd" / "images"), ["banded"], 7)
    split_json(str(tmp_path / "dtd" / "split_zhou_DescribableTextures.json"), files, {})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        build(str(tmp_path), "DescribableTextures", num_shots=1)
    assert os.listdir(tmp_path / "dtd" / "split_fewshot") == []


def test_coop_static_api_available():
    from datasets.dtd import DescribableTextures
    from datasets.imagenet import ImageNet
    from datasets.oxford_pets import OxfordPets

    for fn in ("read_split", "save_split", "split_trainval", "subsample_classes"):
        assert getattr(OxfordPets, fn) is getattr(CoOpDataset, fn)
    assert callable(DescribableTextures.read_and_split_data) and callable(ImageNet.read_classnames)


# ------------------------------------------------------------------------------- synthetic
def test_synthetic_shapes_generated_once_and_deterministic(tmp_path):
    ds = build(str(tmp_path), "SyntheticShapes")
    assert ds.num_classes == 10 and ds.classnames[:3] == ["circle", "square", "triangle"]
    assert sizes(ds) == (200, 100, 200)
    split = tmp_path / "synthetic_shapes" / "split_zhou_SyntheticShapes.json"
    mtime = split.stat().st_mtime_ns
    png = tmp_path / "synthetic_shapes" / "images" / "star" / "train_003.png"
    data = png.read_bytes()
    build(str(tmp_path), "SyntheticShapes", num_shots=4)
    assert split.stat().st_mtime_ns == mtime  # re-used, not regenerated
    os.remove(split)
    build(str(tmp_path), "SyntheticShapes")
    assert png.read_bytes() == data  # same seed, same pixels


# ------------------------------------------------------------------------------- fetch_splits
def test_fetch_splits_skips_validates_and_never_clobbers(tmp_path, capsys):
    calls = []

    def good(gid, out):
        calls.append(gid)
        write(out, json.dumps({"train": [], "val": [], "test": []}))

    assert fetch_splits.main(["--root", str(tmp_path), "--datasets", "EuroSAT", "DescribableTextures"], download=good) == 0
    assert os.path.isfile(tmp_path / "eurosat" / "split_zhou_EuroSAT.json")
    assert fetch_splits.main(["--root", str(tmp_path), "--datasets", "EuroSAT"], download=good) == 0
    assert len(calls) == 2  # second run skipped the existing file

    target = tmp_path / "ucf101" / "split_zhou_UCF101.json"
    write(str(target), "{broken")

    def offline(gid, out):
        write(out, '{"tra')  # partial file, then the connection drops
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    assert fetch_splits.main(["--root", str(tmp_path), "--datasets", "UCF101"], download=offline) == 1
    assert target.read_text() == "{broken" and os.listdir(target.parent) == ["split_zhou_UCF101.json"]
    assert "offline" in capsys.readouterr().err
    assert fetch_splits.main(["--root", str(tmp_path), "--datasets", "UCF101"], download=good) == 0
    assert json.loads(target.read_text())["train"] == []
