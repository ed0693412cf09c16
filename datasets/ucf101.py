"""UCF101 (101 actions), one middle frame per video: UCF-101-midframes/<Action_Name>/*.jpg.
Class names split the CamelCase action into words joined by "_" ("Apply_Eye_Makeup")."""
import os
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .common import CoOpDataset, read_lines


@DATASET_REGISTRY.register()
class UCF101(CoOpDataset):

    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"

    def build_split(self):
        class_file = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
        self.require(class_file)
        cname2lab = {}
        for line in read_lines(class_file):
            label, classname = line.split(" ")
            cname2lab[classname] = int(label) - 1
        trainval = self.read_list("ucfTrainTestlist/trainlist01.txt", lambda line: self.datum(cname2lab, line))
        test = self.read_list("ucfTrainTestlist/testlist01.txt", lambda line: self.datum(cname2lab, line))
        train, val = self.split_trainval(trainval)
        return train, val, test

    def datum(self, cname2lab, line):
        """"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi [label]" -> its middle frame's Datum."""
        action, filename = line.split(" ")[0].split("/")
        renamed_action = action_name(action)
        impath = os.path.join(self.image_dir, renamed_action, filename.replace(".avi", ".jpg"))
        return Datum(impath=impath, label=cname2lab[action], classname=renamed_action)

def action_name(action):
    """"ApplyEyeMakeup" -> "Apply_Eye_Makeup" (CoOp's renaming)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))
