"""Oxford Flowers-102: jpg/image_XXXXX.jpg, labels in imagelabels.mat, names in cat_to_name.json."""
import os
import random
from collections import defaultdict

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import UserValueError

from .common import CoOpDataset, read_json_file


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpDataset):

    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"

    def build_split(self):
        return self.read_data()

    def read_data(self):
        """50% train, 20% val, 30% test per class (CoOp's split of the labelled images)."""
        from scipy.io import loadmat

        label_file = os.path.join(self.dataset_dir, "imagelabels.mat")
        lab2cname_file = os.path.join(self.dataset_dir, "cat_to_name.json")
        self.require(label_file, lab2cname_file)
        tracker = defaultdict(list)
        for i, label in enumerate(loadmat(label_file)["labels"][0]):
            tracker[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        lab2cname = read_json_file(lab2cname_file, "class-name file")

        print("Splitting data into 50% train, 20% val, and 30% test")
        train, val, test = [], [], []
        for label, impaths in tracker.items():
            random.shuffle(impaths)
            n_train, n_val = round(len(impaths) * 0.5), round(len(impaths) * 0.2)
            if min(n_train, n_val, len(impaths) - n_train - n_val) < 1:
                raise UserValueError(f"flower class {label} has {len(impaths)} images: too few to split")
            cname = lab2cname[str(label)]
            for part, ims in ((train, impaths[:n_train]), (val, impaths[n_train:n_train + n_val]),
                              (test, impaths[n_train + n_val:])):
                part.extend(Datum(impath=im, label=label - 1, classname=cname) for im in ims)
        return train, val, test
