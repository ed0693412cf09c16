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
        return tuple(self.read_list(f"images_variant_{s}.txt", lambda line: self.datum(cname2lab, line))
                     for s in ("train", "val", "test"))

    def require(self, *paths):
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"FGVCAircraft needs {path}; use the data/ folder of fgvc-aircraft-2013b as "
                    "fgvc_aircraft/ (see docs/DATASETS.md)"
                )

    def datum(self, cname2lab, line):
        """"<image id> <variant name>" -> Datum."""
        imname, _, classname = line.partition(" ")
        return Datum(impath=os.path.join(self.image_dir, imname + ".jpg"), label=cname2lab[classname],
                     classname=classname)
