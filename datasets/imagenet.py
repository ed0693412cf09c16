"""ImageNet-1k: images/train/<wnid>/*, images/val/<wnid>/* and CoOp's classnames.txt
("<wnid> <class name>" per line). The official val images are the test set, which also serves
as the val set (as CoOp). The parsed lists are cached in preprocessed.pkl; few-shot caches
hold the train set only."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import UserKeyError, listdir_nohidden

from .checks import check_split, images_per_class, load_fewshot_cache
from .common import CoOpDataset, read_classnames, try_cache_write, write_pickle_atomic


@DATASET_REGISTRY.register()
class ImageNet(CoOpDataset):

    dataset_dir = "imagenet"
    image_subdir = "images"
    val_is_test = True

    read_classnames = staticmethod(read_classnames)

    def load_splits(self):
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")
        if os.path.exists(self.preprocessed):
            data = load_fewshot_cache(self.preprocessed, ("train", "test"), "ImageNet cache")
            check_split((data["train"], None, data["test"]), self.preprocessed,
                        "Delete it to list the image folders again")
            return data["train"], None, data["test"]
        classnames = self.read_classnames(os.path.join(self.dataset_dir, "classnames.txt"))
        train = self.read_data(classnames, "train")
        test = self.read_data(classnames, "val")  # standard practice: evaluate on val
        check_split((train, None, test), self.image_dir,
                    "Complete images/train and images/val (layout: docs/DATASETS.md); nothing was written")
        try_cache_write(lambda p: write_pickle_atomic({"train": train, "test": test}, p, overwrite=False),
                        self.preprocessed, "preprocessed ImageNet lists")
        return train, None, test

    def read_data(self, classnames, split_dir):
        split_dir = os.path.join(self.image_dir, split_dir)
        if not os.path.isdir(split_dir):
            raise FileNotFoundError(
                f"ImageNet: {split_dir} not found (extract train/ and val/ under imagenet/images; "
                "see docs/DATASETS.md)"
            )
        folders = sorted(f.name for f in os.scandir(split_dir) if f.is_dir())
        files = {folder: listdir_nohidden(os.path.join(split_dir, folder)) for folder in folders}
        if not folders or not all(files.values()):
            found = images_per_class({f: len(files[f]) for f in folders})
            raise FileNotFoundError(
                f"ImageNet: {split_dir} is empty or incomplete: {found}. Expected {split_dir}/<wnid>/<images> "
                "for every class of classnames.txt (layout: docs/DATASETS.md)"
            )
        items = []
        for label, folder in enumerate(folders):
            if folder not in classnames:
                raise UserKeyError(f"ImageNet: folder {folder} of {split_dir} is not in classnames.txt")
            for imname in files[folder]:
                impath = os.path.join(split_dir, folder, imname)
                items.append(Datum(impath=impath, label=label, classname=classnames[folder]))
        return items
