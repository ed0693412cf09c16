"""Oxford-IIIT Pets (37 breeds). Raw split: annotations/trainval.txt and test.txt."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .common import CoOpDataset, read_lines


@DATASET_REGISTRY.register()
class OxfordPets(CoOpDataset):

    dataset_dir = "oxford_pets"
    image_subdir = "images"

    @property
    def anno_dir(self):
        return os.path.join(self.dataset_dir, "annotations")

    def build_split(self):
        trainval = self.read_data("trainval.txt")
        test = self.read_data("test.txt")
        train, val = self.split_trainval(trainval)
        return train, val, test

    def read_data(self, split_file):
        """Lines "<Breed_Name>_<n> <class id> <species> <breed id>"; the class name is the
        lower-cased breed."""
        filepath = os.path.join(self.anno_dir, split_file)
        self.require(filepath)
        items = []
        for line in read_lines(filepath):
            imname, label = line.split(" ")[:2]
            breed = "_".join(imname.split("_")[:-1]).lower()
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(Datum(impath=impath, label=int(label) - 1, classname=breed))
        return items
