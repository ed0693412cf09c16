"""The open vocabulary W that EMPL draws unseen words U_i from (docs/EMPL.md, "Open-vocabulary
meta-learning").

Default W: the words the backbone was pretrained on when it is a local CLIP that names them
(the bundled benchmark's world CLIPs: the world's 308 words), else trainers/data/
open_vocabulary.txt.gz: the whole-word entries of the BPE vocabulary that ships with the clip
package that are dictionary words, not suffix fragments such as "tion" or "ness"
(tools/make_open_vocabulary.py builds it). TRAINER.EMPL.VOCAB_FILE replaces it with a word list
(one word per line, '#' comments; .gz allowed). Every word of the training classes' names is
removed, so no U_i holds a class the run trains on; the names of classes the run never sees
(the test's new classes, a transfer target's) are not read.
"""
import functools
import gzip
import os
import random
import re
from typing import Iterable, List, Sequence
from .errors import UserValueError

MIN_WORD_LENGTH = 3
DEFAULT_VOCAB_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "open_vocabulary.txt.gz")


@functools.lru_cache(maxsize=4)
def clip_bpe_words() -> tuple:
    """Whole words of CLIP's BPE vocabulary (cached per process; ~0.3 s to build)."""
    import clip.simple_tokenizer as st

    bpe_path = os.path.join(os.path.dirname(st.__file__), "bpe_simple_vocab_16e6.txt.gz")
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")
    # SimpleTokenizer keeps merges[1 : 49152 - 256 - 2 + 1]; a merge "a b" adds the token "ab".
    merges = merges[1 : 49152 - 256 - 2 + 1]
    words = set()
    for merge in merges:
        token = merge.replace(" ", "")
        if token.endswith("</w>"):
            word = token[: -len("</w>")]
            if len(word) >= MIN_WORD_LENGTH and word.isascii() and word.isalpha():
                words.add(word)
    return tuple(sorted(words))


def read_word_file(path: str) -> tuple:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"TRAINER.EMPL.VOCAB_FILE: {path} does not exist (one word per line; leave the key "
            "empty for the default vocabulary, trainers/data/open_vocabulary.txt.gz)"
        )
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        words = [line.strip().lower() for line in f]
    words = tuple(sorted({w for w in words if w and not w.startswith("#")}))
    if not words:
        raise UserValueError(f"TRAINER.EMPL.VOCAB_FILE: {path} holds no words")
    return words


def name_words(classnames: Iterable[str]) -> set:
    """Lower-cased words of class names: 'Sea_lion' -> {'sea', 'lion', 'sea lion'}."""
    excluded = set()
    for name in classnames:
        text = name.lower().replace("_", " ")
        excluded.add(text.strip())
        excluded.update(w for w in re.split(r"[^a-z0-9]+", text) if w)
    return excluded


class OpenVocabulary:
    """W minus the class names, and a seeded uniform draw of U_i from it."""

    def __init__(self, exclude_classnames: Sequence[str], vocab_file: str = "", seed: int = 0,
                 default_words: Sequence[str] = ()):
        words = read_word_file(vocab_file or DEFAULT_VOCAB_FILE) if vocab_file or not default_words else tuple(default_words)
        excluded = name_words(exclude_classnames)
        self.words: List[str] = [w for w in words if w.lower() not in excluded]
        if not self.words:
            raise UserValueError("the open vocabulary is empty once the class names are removed")
        self._rng = random.Random(seed)

    def __len__(self):
        return len(self.words)

    def draw(self, n: int) -> List[str]:
        """n distinct words, uniformly (all of W when n >= |W|)."""
        return self._rng.sample(self.words, min(n, len(self.words)))

    def state_dict(self) -> dict:
        return {"rng": self._rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self._rng.setstate(state["rng"])
