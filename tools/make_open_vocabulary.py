"""Build trainers/data/open_vocabulary.txt.gz: EMPL's default open vocabulary for the real CLIPs.

    pip install english-words==2.0.2 && python -m tools.make_open_vocabulary

The words are the whole-word entries of CLIP's BPE vocabulary (trainers.open_vocab.clip_bpe_words:
alphabetic, >= 3 letters) that are also dictionary words in both of english-words' lists (web2,
Webster's 2nd edition, and GCIDE), minus common English suffixes that BPE learned as word-final
fragments and the dictionaries list as words ("ing", "ness", "ment"). The output is sorted and
deterministic; english-words is needed only to rebuild it, not to run EMPL.
"""
import gzip
import os
import sys

from trainers.open_vocab import DEFAULT_VOCAB_FILE, clip_bpe_words

SUFFIXES = {
    "able", "ably", "ade", "age", "ally", "ance", "ant", "ary", "ate", "ation", "ence", "ent", "ers", "ery",
    "ese", "ess", "est", "ette", "ful", "hood", "ial", "ian", "ible", "ical", "ier", "ies", "ily", "ing",
    "ings", "ion", "ions", "ise", "ish", "ism", "ist", "ity", "ive", "ize", "less", "ling", "ment", "ness",
    "ory", "ous", "ship", "sion", "some", "tion", "ward", "wise",
}


def main() -> int:
    try:
        from english_words import get_english_words_set
    except ImportError:
        print("error: this script needs the english-words package: pip install english-words==2.0.2", file=sys.stderr)
        return 2
    dictionary = get_english_words_set(["web2"], lower=True, alpha=True) & get_english_words_set(
        ["gcide"], lower=True, alpha=True)
    words = sorted(w for w in clip_bpe_words() if w in dictionary and w not in SUFFIXES)
    os.makedirs(os.path.dirname(DEFAULT_VOCAB_FILE), exist_ok=True)
    with gzip.GzipFile(DEFAULT_VOCAB_FILE, "wb", mtime=0) as f:  # mtime 0: the same bytes every build
        f.write(("\n".join(words) + "\n").encode("utf-8"))
    print(f"{len(words)} words -> {DEFAULT_VOCAB_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
