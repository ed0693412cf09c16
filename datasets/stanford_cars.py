"""Stanford Cars (196 models). Split paths are relative to the dataset folder
(cars_train/..., cars_test/...); class names put the year first ("2012 Tesla Model S")."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .common import CoOpDataset


@DATASET_REGISTRY.register()
class StanfordCars(CoOpDataset):

    dataset_dir = "stanford_cars"
    image_subdir = ""  # split paths are relative to dataset_dir

    def build_split(self):
        meta_file = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval_file = os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat")
        test_file = os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
        self.require(meta_file, trainval_file, test_file)
        trainval = self.read_data("cars_train", trainval_file, meta_file)
        test = self.read_data("cars_test", test_file, meta_file)
        train, val = self.split_trainval(trainval)
        return train, val, test

    def read_data(self, image_dir, anno_file, meta_file):
        from scipy.io import loadmat

        annos = loadmat(anno_file)["annotations"][0]
        class_names = loadmat(meta_file)["class_names"][0]
        items = []
        for anno in annos:
            label = int(anno["class"][0, 0]) - 1
            names = class_names[label][0].split(" ")
            classname = " ".join([names[-1]] + names[:-1])  # year first
            impath = os.path.join(self.dataset_dir, image_dir, anno["fname"][0])
            items.append(Datum(impath=impath, label=label, classname=classname))
        return items
