"""Datum and DatasetBase: Dassl's dataset containers (same names, attributes and semantics)."""
import os
import random
import tarfile
import zipfile
from collections import defaultdict

from dassl.utils import UserValueError


class Datum:
    """One labelled image.

    The private attribute names (``_impath``, ``_label``, ``_domain``, ``_classname``) and the
    module path are Dassl's, so few-shot caches pickled by Dassl/CoOp load here and vice versa.

    Args:
        impath (str): image path (must exist).
        label (int): class label.
        domain (int): domain label.
        classname (str): class name.
    """

    def __init__(self, impath="", label=0, domain=0, classname=""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}")
        if not os.path.isfile(impath):
            raise FileNotFoundError(f"image not found: {impath}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    impath = property(lambda self: self._impath)
    label = property(lambda self: self._label)
    domain = property(lambda self: self._domain)
    classname = property(lambda self: self._classname)

    def __repr__(self):
        return f"Datum({self._impath!r}, label={self._label}, domain={self._domain}, classname={self._classname!r})"


class DatasetBase:
    """A dataset: lists of Datum for labelled training (train_x), unlabelled training (train_u),
    validation (val) and test data, as Dassl's DatasetBase.

    ``num_classes``, ``lab2cname`` and ``classnames`` are derived from ``train_x``.
    """

    dataset_dir = ""  # the directory where the dataset is stored
    domains = []  # string names of all domains

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self._classnames)
    num_classes = property(lambda self: self._num_classes)

    @staticmethod
    def get_num_classes(data_source):
        """Number of classes: the largest label + 1."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        """Return ({label: classname}, [classname sorted by label])."""
        mapping = {item.label: item.classname for item in data_source}
        return mapping, [mapping[label] for label in sorted(mapping)]

    def check_input_domains(self, source_domains, target_domains):
        if len(source_domains) == 0:
            raise UserValueError("source_domains (list) is empty")
        if len(target_domains) == 0:
            raise UserValueError("target_domains (list) is empty")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains):
        for domain in input_domains:
            if domain not in self.domains:
                raise UserValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def download_data(self, url, dst, from_gdrive=True):
        """Download ``url`` (Google Drive) to ``dst`` and extract it next to ``dst``."""
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not from_gdrive:
            raise NotImplementedError("only Google Drive downloads are supported")
        import gdown

        gdown.download(url, dst, quiet=False)
        print("Extracting file ...")
        out_dir = os.path.dirname(dst)
        if dst.endswith(".zip"):
            with zipfile.ZipFile(dst, "r") as zf:
                zf.extractall(out_dir)
        elif dst.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(dst, "r:*") as tar:
                tar.extractall(out_dir)
        else:
            raise NotImplementedError(f"cannot extract {dst}: expected .zip, .tar or .tar.gz")
        print(f"File extracted to {out_dir}")

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        """Sample ``num_shots`` items per class from each data source (Dassl's semantics).

        For every class (in order of first appearance) ``random.sample(items, num_shots)``;
        a class with fewer items gives ``random.choices(items, k=num_shots)`` when ``repeat``,
        else all its items. ``num_shots < 1`` returns the sources unchanged. Returns one list
        for one source, else a list of lists.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            dataset = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    dataset.extend(random.sample(items, num_shots))
                elif repeat:
                    dataset.extend(random.choices(items, k=num_shots))
                else:
                    dataset.extend(items)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source):
        """Group a list of Datum into {label: [Datum]} (insertion-ordered)."""
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source):
        """Group a list of Datum into {domain: [Datum]} (insertion-ordered)."""
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
