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
        trainval = self.read_list("Training_01.txt", lambda line: self.datum(cname2lab, line))
        test = self.read_list("Testing_01.txt", lambda line: self.datum(cname2lab, line))
        train, val = self.split_trainval(trainval)
        return train, val, test

    def datum(self, cname2lab, line):
        """"/a/apartment_building/outdoor/x.jpg" -> class "outdoor apartment_building"."""
        imname = line[1:]
        folder = os.path.dirname(imname)
        classname = " ".join(folder.split("/")[1:][::-1])
        return Datum(impath=os.path.join(self.image_dir, imname), label=cname2lab[folder], classname=classname)
