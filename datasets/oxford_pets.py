"""Oxford-IIIT Pets (37 breeds). Raw split: annotations/trainval.txt and test.txt."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .common import CoOpDataset


@DATASET_REGISTRY.register()
class OxfordPets(CoOpDataset):

    dataset_dir = "oxford_pets"
    image_subdir = "images"

    def build_split(self):
        trainval = self.read_list("annotations/trainval.txt", self.datum)
        test = self.read_list("annotations/test.txt", self.datum)
        train, val = self.split_trainval(trainval)
        return train, val, test

    def datum(self, line):
        """"<Breed_Name>_<n> <class id> <species> <breed id>" -> Datum; the class name is the
        lower-cased breed."""
        imname, label = line.split(" ")[:2]
        breed = "_".join(imname.split("_")[:-1]).lower()
        return Datum(impath=os.path.join(self.image_dir, imname + ".jpg"), label=int(label) - 1, classname=breed)
