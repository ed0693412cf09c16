"""SUN397 (397 scenes): SUN397/<l>/<scene>[/<kind>]/*.jpg with ClassName.txt and the first
official partition (Training_01.txt, Testing_01.txt)."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .common import CoOpDataset, read_lines


@DATASET_REGISTRY.register()
class SUN397(CoOpDataset):

    dataset_dir = "sun397"
    image_subdir = "SUN397"

    def build_split(self):
        class_file = os.path.join(self.dataset_dir, "ClassName.txt")
        self.require(class_file)
        classnames = [line[1:] for line in read_lines(class_file)]  # drop the leading "/"
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        train, val = self.split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab, text_file):
        """"/a/apartment_building/outdoor/x.jpg" -> class "outdoor apartment_building"."""
        text_file = os.path.join(self.dataset_dir, text_file)
        self.require(text_file)
        items = []
        for line in read_lines(text_file):
            imname = line[1:]
            folder = os.path.dirname(imname)
            classname = " ".join(folder.split("/")[1:][::-1])
            impath = os.path.join(self.image_dir, imname)
            items.append(Datum(impath=impath, label=cname2lab[folder], classname=classname))
        return items
