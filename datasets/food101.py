"""Food-101 (101 dishes): images/<dish>/*.jpg."""
from dassl.data.datasets import DATASET_REGISTRY

from .common import CoOpDataset


@DATASET_REGISTRY.register()
class Food101(CoOpDataset):

    dataset_dir = "food-101"
    image_subdir = "images"
    folder_per_class = True
