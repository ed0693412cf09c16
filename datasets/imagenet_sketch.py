"""ImageNet-Sketch (test only, 1000 classes): images/<wnid>/*."""
from dassl.data.datasets import DATASET_REGISTRY

from .common import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):

    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
