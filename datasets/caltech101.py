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
    folder_per_class = True
    ignored_folders = IGNORED
