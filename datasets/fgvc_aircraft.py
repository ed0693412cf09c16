"""FGVC-Aircraft (100 variants): images/<id>.jpg with the official variant train/val/test
lists (images_variant_{train,val,test}.txt) and variants.txt; there is no split json."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .common import CoOpDataset, read_lines


@DATASET_REGISTRY.register()
class FGVCAircraft(CoOpDataset):

    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"

    def load_splits(self):
        variants = os.path.join(self.dataset_dir, "variants.txt")
        self.require(variants)
        cname2lab = {c: i for i, c in enumerate(read_lines(variants))}
        return tuple(self.read_data(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test"))

    def require(self, *paths):
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"FGVCAircraft needs {path}; use the data/ folder of fgvc-aircraft-2013b as "
                    "fgvc_aircraft/ (see docs/DATASETS.md)"
                )

    def read_data(self, cname2lab, split_file):
        """Lines "<image id> <variant name>"."""
        filepath = os.path.join(self.dataset_dir, split_file)
        self.require(filepath)
        items = []
        for line in read_lines(filepath):
            imname, _, classname = line.partition(" ")
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(Datum(impath=impath, label=cname2lab[classname], classname=classname))
        return items
