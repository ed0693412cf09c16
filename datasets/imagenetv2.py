"""ImageNetV2 matched-frequency (test only): imagenetv2-matched-frequency-format-val/<i>/*,
where folder i is the i-th class of ImageNet's classnames.txt."""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .common import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"

    def class_folders(self, classnames):
        names = list(classnames.values())
        missing = [str(i) for i in range(len(names)) if not os.path.isdir(os.path.join(self.image_dir, str(i)))]
        if missing:
            raise FileNotFoundError(f"ImageNetV2: class folders {missing[:5]} missing under {self.image_dir}")
        return [(str(i), name) for i, name in enumerate(names)]
