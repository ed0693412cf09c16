"""Generated datasets: CoOp split datasets whose images are rendered on first use (no download),
e.g. SyntheticShapes and the bundled benchmark's World* tasks."""
import os

from dassl.utils import write_json  # write_json is atomic

from .common import CoOpDataset, read_json_file

GENERATED_SPLITS = ("train", "val", "test")


def save_png_atomic(img, path):
    """Save a PIL image as PNG through a temporary file + os.replace."""
    tmp = f"{path}.{os.getpid()}.tmp"
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def generate_image_split(dataset_dir, classnames, render, counts, seed, split_path, params, first_image=None):
    """Render ``counts[split]`` images per class under ``dataset_dir/images/<class folder>/`` and
    write ``generator.json`` (``params``) and the CoOp split file (last and atomically: its
    presence means the set is complete). Returns the split dict.

    ``render(label, classname, rng)`` returns a PIL image; image ``i`` of split ``s`` of class
    ``label`` draws from ``numpy.random.default_rng([seed, label, s, first_image[s] + i])``
    (``first_image``: a split's first index in that stream, 0 where not given), so the pixels do
    not depend on the order the images are made in. Class folders are the class names with spaces
    replaced by underscores.
    """
    import numpy as np

    image_dir = os.path.join(dataset_dir, "images")
    split = {s: [] for s in GENERATED_SPLITS}
    for label, classname in enumerate(classnames):
        folder = classname.replace(" ", "_")
        os.makedirs(os.path.join(image_dir, folder), exist_ok=True)
        for s_idx, s in enumerate(GENERATED_SPLITS):
            for i in range(counts[s]):
                rng = np.random.default_rng([seed, label, s_idx, (first_image or {}).get(s, 0) + i])
                rel = f"{folder}/{s}_{i:03d}.png"
                save_png_atomic(render(label, classname, rng), os.path.join(image_dir, rel))
                split[s].append([rel, label, classname])
    write_json(params, os.path.join(dataset_dir, "generator.json"))
    write_json(split, split_path)
    return split


class GeneratedDataset(CoOpDataset):
    """A CoOp split dataset whose images are rendered on first use (no download).

    Subclasses set ``dataset_dir`` and implement ``classnames_in_order()``, ``render(label,
    classname, rng)`` and ``generator_params()`` (a JSON-able dict saved as ``generator.json``;
    when it changes, the images, split and few-shot caches are made again). ``counts`` gives the
    images per class of each split, ``seed`` the rendering seed, ``first_image`` the index of
    each split's first image in its stream of renders (0 where not given: see
    ``generate_image_split``).
    """

    image_subdir = "images"
    generated = True
    counts = {"train": 20, "val": 10, "test": 20}
    seed = 0
    first_image = {}

    def classnames_in_order(self):
        raise NotImplementedError

    def render(self, label, classname, rng):
        raise NotImplementedError

    def generator_params(self):
        raise NotImplementedError

    def load_splits(self):
        meta_path = os.path.join(self.dataset_dir, "generator.json")
        params = self.generator_params()
        fresh = os.path.exists(self.split_path) and os.path.exists(meta_path) \
            and read_json_file(meta_path, "generator file") == params
        if not fresh:
            if os.path.exists(self.split_path):
                print(f"{self.dataset_dir} was made with other generator settings; regenerating it")
                os.remove(self.split_path)
                import shutil

                shutil.rmtree(self.split_fewshot_dir, ignore_errors=True)  # stale few-shot caches
            print(f"Generating {type(self).__name__} under {self.dataset_dir}")
            generate_image_split(self.dataset_dir, self.classnames_in_order(), self.render, self.counts,
                                 self.seed, self.split_path, params, self.first_image)
        return self.read_split(self.split_path, self.image_dir)
