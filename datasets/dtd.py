"""Describable Textures (47 classes): images/<texture>/*.jpg."""
from dassl.data.datasets import DATASET_REGISTRY

from .common import CoOpDataset


@DATASET_REGISTRY.register()
class DescribableTextures(CoOpDataset):

    dataset_dir = "dtd"
    image_subdir = "images"
    folder_per_class = True
