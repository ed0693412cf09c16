"""ImageNet-A(dversarial) (test only, 200 classes): imagenet-a/<wnid>/*."""
from dassl.data.datasets import DATASET_REGISTRY

from .common import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetVariant):

    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
