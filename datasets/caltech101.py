"""Caltech-101 (100 object classes; the background and duplicate face classes are dropped)."""
from dassl.data.datasets import DATASET_REGISTRY

from .common import CoOpDataset

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register()
class Caltech101(CoOpDataset):

    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    new_cnames = NEW_CNAMES

    def build_split(self):
        return self.read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
