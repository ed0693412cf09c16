"""dassl.data: transforms, samplers, DatasetWrapper, loaders and DataManager on SyntheticShapes."""
import random
from collections import Counter

import pytest
import torch
from PIL import Image

import datasets  # noqa: F401  (registers SyntheticShapes)
from dassl.config import get_cfg_default
from dassl.data import DataManager, DatasetWrapper, build_data_loader
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from dassl.data.samplers import build_sampler
from dassl.data.transforms import AVAI_CHOICES, build_transform


def make_cfg(root="", **input_opts):
    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # launch.extend_cfg adds this key
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "SyntheticShapes"
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SIZE = (32, 32)
    for k, v in input_opts.items():
        setattr(cfg.INPUT, k, v)
    return cfg


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    build_dataset(make_cfg(root))  # generate once
    return root


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(path)
    return str(path)


# ------------------------------------------------------------------------------- transforms
def test_train_and_test_transform_shapes():
    img = Image.new("RGB", (50, 40), (10, 200, 30))
    cfg = make_cfg(TRANSFORMS=("random_resized_crop", "random_flip", "colorjitter", "randomgrayscale",
                               "gaussian_blur", "cutout", "normalize", "gaussian_noise"), GB_K=3)
    out = build_transform(cfg, is_train=True)(img)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 32, 32) and out.dtype == torch.float32
    test = build_transform(cfg, is_train=False)
    assert [type(t).__name__ for t in test.transforms] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert test(img).shape == (3, 32, 32)


@pytest.mark.parametrize("choices", [
    ("random_crop", "normalize"), ("random_translation", "instance_norm"), ("center_crop",),
    ("imagenet_policy",), ("cifar10_policy",), ("svhn_policy",), ("randaugment",),
    ("randaugment_fixmatch",), ("randaugment2",),
])
def test_every_transform_name_builds(choices):
    cfg = make_cfg(TRANSFORMS=choices)
    out = build_transform(cfg, is_train=True)(Image.new("RGB", (32, 32), (90, 90, 200)))
    assert out.shape == (3, 32, 32)


def test_instance_norm_and_unknown_names():
    cfg = make_cfg(TRANSFORMS=("instance_norm",))
    out = build_transform(cfg, is_train=False)(Image.linear_gradient("L").convert("RGB"))
    assert abs(out.mean().item()) < 1e-4
    with pytest.raises(ValueError, match=r"unknown transform\(s\) \['random_flop'\]; valid names: random_flip"):
        build_transform(make_cfg(), choices=["random_flop"])
    with pytest.raises(ValueError, match="INPUT.INTERPOLATION 'cubic'"):
        build_transform(make_cfg(INTERPOLATION="cubic"))
    assert build_transform(make_cfg(NO_TRANSFORM=True)) is None
    assert set(AVAI_CHOICES) >= {"random_flip", "random_resized_crop", "normalize", "center_crop"}


# ------------------------------------------------------------------------------- wrapper / loaders
def test_dataset_wrapper_items(image):
    cfg = make_cfg(TRANSFORMS=("random_flip", "normalize"))
    cfg.DATALOADER.K_TRANSFORMS = 2
    cfg.DATALOADER.RETURN_IMG0 = True
    data = [Datum(image, label=3, domain=1, classname="red")]
    tfm = build_transform(cfg)
    item = DatasetWrapper(cfg, data, transform=[tfm, tfm], is_train=True)[0]
    assert {k: item[k] for k in ("label", "domain", "impath", "index")} == {"label": 3, "domain": 1, "impath": image, "index": 0}
    assert isinstance(item["img"], list) and len(item["img"]) == 2 and item["img2"][1].shape == (3, 32, 32)
    assert item["img0"].shape == (3, 32, 32)
    assert DatasetWrapper(cfg, data, transform=tfm, is_train=False)[0]["img"].shape == (3, 32, 32)  # K=1 at test
    assert isinstance(DatasetWrapper(make_cfg(), data)[0]["img"], Image.Image)
    with pytest.raises(ValueError, match="Cannot augment the image 2 times"):
        DatasetWrapper(cfg, data, transform=None, is_train=True)


def test_corrupt_image_error_names_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    good = tmp_path / "good.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(good)
    cut = tmp_path / "truncated.png"
    cut.write_bytes(good.read_bytes()[:300])  # valid header, missing pixels
    tfm = build_transform(make_cfg(), is_train=False)
    for path in (bad, cut):
        with pytest.raises(OSError, match=path.name.replace(".", r"\.")):
            DatasetWrapper(make_cfg(), [Datum(str(path))], transform=tfm)[0]


def test_build_data_loader_drop_last(image):
    cfg = make_cfg(TRANSFORMS=("normalize",))
    tfm = build_transform(cfg, is_train=False)
    data = [Datum(image, label=i % 2) for i in range(5)]
    kw = dict(sampler_type="SequentialSampler", data_source=data, batch_size=2, tfm=tfm)
    assert len(build_data_loader(cfg, is_train=True, **kw)) == 2  # drops the last incomplete batch
    assert len(build_data_loader(cfg, is_train=False, **kw)) == 3
    kw["batch_size"] = 8  # fewer items than a batch: keep them
    assert len(build_data_loader(cfg, is_train=True, **kw)) == 1


# ------------------------------------------------------------------------------- samplers
def fake_items(n_labels, n_domains, per):
    class Item:
        def __init__(self, label, domain):
            self.label, self.domain = label, domain

    return [Item(c, d) for c in range(n_labels) for d in range(n_domains) for _ in range(per)]


def test_samplers():
    random.seed(0)
    data = fake_items(4, 2, 3)  # 24 items: 4 classes x 2 domains x 3
    assert sorted(build_sampler("RandomSampler", data_source=data)) == list(range(24))
    assert list(build_sampler("SequentialSampler", data_source=data)) == list(range(24))
    for name in ("RandomDomainSampler", "SeqDomainSampler"):
        idxs = list(build_sampler(name, data_source=data, batch_size=4, n_domain=2))
        assert len(idxs) % 4 == 0 and len(set(idxs)) == len(idxs)
        for b in range(0, len(idxs), 4):
            assert Counter(data[i].domain for i in idxs[b:b + 4]) == {0: 2, 1: 2}
    sampler = build_sampler("RandomClassSampler", data_source=data, batch_size=4, n_ins=2)
    idxs = list(sampler)
    assert len(idxs) == len(sampler)
    for b in range(0, len(idxs), 4):
        assert sorted(Counter(data[i].label for i in idxs[b:b + 4]).values()) == [2, 2]
    with pytest.raises(ValueError, match="Unknown sampler type: 'Nope'; valid: RandomSampler"):
        build_sampler("Nope", data_source=data)


# ------------------------------------------------------------------------------- DatasetBase
def test_generate_fewshot_dataset_matches_dassl_semantics(image):
    items = [Datum(image, label=c, classname=str(c)) for c in (0, 1, 1, 1, 2, 2, 2, 2)]
    base = DatasetBase(train_x=items)
    assert base.num_classes == 3 and base.lab2cname == {0: "0", 1: "1", 2: "2"}
    random.seed(3)
    got = base.generate_fewshot_dataset(items, num_shots=2)
    random.seed(3)
    groups = base.split_dataset_by_label(items)
    expected = groups[0] + random.sample(groups[1], 2) + random.sample(groups[2], 2)  # class 0 has 1: kept
    assert got == expected
    assert Counter(x.label for x in base.generate_fewshot_dataset(items, num_shots=3, repeat=True)) == {0: 3, 1: 3, 2: 3}
    a, b = base.generate_fewshot_dataset(items, items, num_shots=1)
    assert len(a) == len(b) == 3
    assert base.generate_fewshot_dataset(items, num_shots=-1) is items
    assert set(base.split_dataset_by_domain(items)) == {0}
    with pytest.raises(FileNotFoundError, match="image not found: /no/such.jpg"):
        Datum("/no/such.jpg")


def test_build_dataset_unknown_name():
    cfg = make_cfg()
    cfg.DATASET.NAME = "OxfordPet"
    with pytest.raises(ValueError, match=r"'OxfordPet' is not a registered dataset. Did you mean 'OxfordPets'\?"):
        build_dataset(cfg)
    assert "SyntheticShapes" in DATASET_REGISTRY.registered_names()


# ------------------------------------------------------------------------------- DataManager
def test_data_manager_on_synthetic_shapes(shapes_root, capsys):
    cfg = make_cfg(shapes_root, TRANSFORMS=("random_flip", "normalize"))
    cfg.DATASET.NUM_SHOTS = 4
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 8
    cfg.DATALOADER.TEST.BATCH_SIZE = 50
    cfg.VERBOSE = True
    random.seed(1)
    dm = DataManager(cfg)
    assert dm.num_classes == 10 and dm.num_source_domains == 0
    assert dm.lab2cname[0] == "circle" and len(dm.lab2cname) == 10
    assert dm.train_loader_u is None
    batch = next(iter(dm.train_loader_x))
    assert batch["img"].shape == (8, 3, 32, 32) and batch["label"].shape == (8,)
    assert len(dm.train_loader_x) == 40 // 8
    assert next(iter(dm.test_loader))["img"].shape == (50, 3, 32, 32) and len(dm.test_loader) == 4
    assert len(dm.val_loader.dataset) == 40  # min(NUM_SHOTS, 4) per class
    out = capsys.readouterr().out
    assert "# classes  10" in out and "# train_x  40" in out and "Dataset    SyntheticShapes" in out


def test_data_manager_base_new_classes(shapes_root):
    for subsample, names in (("base", ["circle", "square", "triangle", "star", "cross"]),
                             ("new", ["ring", "diamond", "hexagon", "heart", "crescent"])):
        cfg = make_cfg(shapes_root)
        cfg.DATASET.SUBSAMPLE_CLASSES = subsample
        dm = DataManager(cfg)
        assert dm.num_classes == 5 and [dm.lab2cname[i] for i in range(5)] == names
        assert {int(y) for b in dm.test_loader for y in b["label"]} == set(range(5))
