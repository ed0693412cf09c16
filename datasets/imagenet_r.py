"""ImageNet-R(endition) (test only, 200 classes): imagenet-r/<wnid>/*."""
from dassl.data.datasets import DATASET_REGISTRY

from .common import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):

    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
