"""Download CoOp's split files (split_zhou_*.json) and small metadata files from Google Drive.

    python -m datasets.fetch_splits --root $DATA [--datasets Caltech101 OxfordPets ...]

Each file goes to its dataset folder under ``--root`` (created when missing). Existing valid
files are skipped; a download lands in a temporary file that is checked (valid JSON, or a
non-empty classnames.txt) before it replaces the target, so a partial or failed download never
overwrites anything. ImageNet's classnames.txt is also copied into the folders of the ImageNet
variants that exist under the root. The Google Drive ids are those of CoOp's DATASETS.md.
"""
import argparse
import os
import shutil
import sys
import tempfile

from .common import read_json_file, read_lines

# dataset name -> [(folder under root, file name, Google Drive id)]
FILES = {
    "ImageNet": [("imagenet", "classnames.txt", "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF")],
    "Caltech101": [("caltech-101", "split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN")],
    "OxfordPets": [("oxford_pets", "split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs")],
    "StanfordCars": [("stanford_cars", "split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT")],
    "OxfordFlowers": [
        ("oxford_flowers", "split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ("oxford_flowers", "cat_to_name.json", "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),
    ],
    "Food101": [("food-101", "split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl")],
    "SUN397": [("sun397", "split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq")],
    "DescribableTextures": [("dtd", "split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x")],
    "EuroSAT": [("eurosat", "split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o")],
    "UCF101": [("ucf101", "split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y")],
}
IMAGENET_VARIANT_DIRS = ("imagenetv2", "imagenet-sketch", "imagenet-adversarial", "imagenet-rendition")


def is_valid(path):
    """A complete file: parseable JSON for .json, non-empty '<wnid> <name>' lines for .txt."""
    try:
        if path.endswith(".json"):
            read_json_file(path)
            return True
        lines = read_lines(path)
        return bool(lines) and all(" " in line for line in lines) and not lines[0].lstrip().startswith("<")
    except (OSError, ValueError):
        return False


def fetch_file(folder, filename, gdrive_id, download=None):
    """Fetch one file into ``folder``. Returns "skipped", "downloaded" or "failed"."""
    target = os.path.join(folder, filename)
    if os.path.exists(target):
        if is_valid(target):
            print(f"skip   {target} (exists)")
            return "skipped"
        print(f"warning: {target} exists but is not valid; it is kept until a good copy arrives")
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
    os.close(fd)
    try:
        if download is None:
            import gdown

            download = lambda gid, out: gdown.download(id=gid, output=out, quiet=True)  # noqa: E731
        try:
            download(gdrive_id, tmp)
        except Exception as err:  # network down, quota exceeded, file moved ...
            print(f"failed {target}: {type(err).__name__}: {err}")
            return "failed"
        if not is_valid(tmp):
            print(f"failed {target}: the download is empty or not a valid {filename.rsplit('.', 1)[-1]} file")
            return "failed"
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        print(f"saved  {target}")
        return "downloaded"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def copy_imagenet_classnames(root):
    """Copy imagenet/classnames.txt into the ImageNet variant folders that exist."""
    src = os.path.join(root, "imagenet", "classnames.txt")
    if not is_valid(src):
        return
    for d in IMAGENET_VARIANT_DIRS:
        dst = os.path.join(root, d, "classnames.txt")
        if os.path.isdir(os.path.dirname(dst)) and not is_valid(dst):
            shutil.copyfile(src, dst)
            print(f"copied {src} -> {dst}")


def main(argv=None, download=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="DATASET.ROOT: the folder that holds the datasets")
    parser.add_argument("--datasets", nargs="+", default=list(FILES), metavar="NAME",
                        help=f"datasets to fetch for (default: all): {' '.join(FILES)}")
    args = parser.parse_args(argv)
    unknown = [d for d in args.datasets if d not in FILES]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {', '.join(FILES)} "
                     "(FGVCAircraft, the ImageNet variants and SyntheticShapes need no split file)")
    root = os.path.abspath(os.path.expanduser(args.root))
    results = [fetch_file(os.path.join(root, folder), name, gid, download)
               for d in args.datasets for folder, name, gid in FILES[d]]
    copy_imagenet_classnames(root)
    failed = results.count("failed")
    if failed:
        print(f"\n{failed} file(s) could not be downloaded. Are you offline? Google Drive also limits "
              "downloads per file; retry later, or download the links in docs/DATASETS.md by hand "
              f"into the folders above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
