"""TRAINER.EMPL: the keys, their defaults and their checks (docs/EMPL.md; README "EMPL
configuration"). The host's keys stay in its own node (TRAINER.COOP, PRODA, MAPLE); the EMPL
trainers are in empl.py and empl_<host>.py.
"""
from yacs.config import CfgNode as CN

from .errors import UserValueError
from .sgld import BACKPROPS, SGLD_GRADIENTS

CONDITIONS = ("batch", "image")
# Inference: "sample" runs SGLD for each test image on that image alone (inductive: a prediction
# depends on its image and the seed); "sample_batch" conditions the chains on the whole test
# batch (transductive: a prediction depends on the other images of its batch, which are then
# drawn in a seeded random order); "amortized" conditions once, on training images saved with
# the checkpoint; "anchor" does not sample.
INFERENCE_MODES = ("sample", "sample_batch", "amortized", "anchor")
TRANSDUCTIVE_MODES = ("sample_batch",)
VOCAB_EXCLUDES = ("training", "dataset")
IN_LOSSES = ("mixture", "per_prompt")
OPEN_LOSSES = ("entropy", "energy", "none")

# Keys renamed since configs and runs were written with the old names, which still load (a YAML
# file, command-line opts, a saved run's config) with a one-line note: N_PROMPTS meant chains per
# anchor here but learned prompts under TRAINER.PRODA; LAMBDA is the weight of OPEN_LOSS.
RENAMED_KEYS = {
    "TRAINER.EMPL.N_PROMPTS": "TRAINER.EMPL.N_CHAINS",
    "TRAINER.EMPL.LAMBDA": "TRAINER.EMPL.OPEN_LOSS_WEIGHT",
}


def add_config(cfg):
    """TRAINER.EMPL (docs/EMPL.md; README "EMPL configuration"); the host's keys stay in its own
    node (TRAINER.COOP, PRODA, MAPLE)."""
    for old, new in RENAMED_KEYS.items():
        cfg.register_renamed_key(old, new)
    cfg.TRAINER.EMPL = CN()
    # The sampler's defaults were chosen on the bundled benchmark's validation data (docs/EMPL.md,
    # "Choosing the defaults"); PRIOR_STD, INIT_STD and SGLD_STEP_SIZE are in units of rms(anchor),
    # so they carry over to other CLIPs; SGLD_LAYERS does not (re-check it on a validation split).
    cfg.TRAINER.EMPL.N_CHAINS = 4  # N chains (samples) per anchor; 0 turns sampling off
    cfg.TRAINER.EMPL.SGLD_STEPS = 1  # T per training step (persistent chains continue across steps)
    cfg.TRAINER.EMPL.SGLD_STEP_SIZE = 0.5  # alpha, Langevin time per step (prior part integrated exactly)
    cfg.TRAINER.EMPL.NOISE_STD = 1.0  # 1 = exact Langevin noise
    cfg.TRAINER.EMPL.INIT_STD = 1.0  # chain starts: anchor + INIT_STD * r * eps (= PRIOR_STD: start from the prior)
    cfg.TRAINER.EMPL.PRIOR_STD = 1.0  # sigma / rms(anchor) of the anchoring prior; <= 0: no prior
    cfg.TRAINER.EMPL.SGLD_GRADIENT = "exact"  # exact, or anchor: the data energy's gradient taken once, at the anchor
    cfg.TRAINER.EMPL.SGLD_LAYERS = 2  # l: sample at the input of text block L - l (2: the paper's Table 4)
    cfg.TRAINER.EMPL.ENERGY_TEMP = 0.01  # T_E: the data term is the batch-mean free energy / T_E
    # Persistent chains: each training step's chains start where the previous step's ended (in
    # units of r from the moving anchor) instead of from the prior; CONDITION batch only.
    cfg.TRAINER.EMPL.PERSISTENT = True
    cfg.TRAINER.EMPL.CONDITION = "batch"  # batch or image
    cfg.TRAINER.EMPL.BACKPROP = "detach"  # detach or full (through the chain)
    cfg.TRAINER.EMPL.N_UNSEEN = 4  # unseen words per batch
    cfg.TRAINER.EMPL.VOCAB_FILE = ""  # word list; empty = trainers/data/open_vocabulary.txt.gz (or a world CLIP's words)
    # Which class names leave the open vocabulary: "training" (the run's own classes, the paper's
    # setting: the names of classes it never sees, the test's new ones included, can be drawn) or
    # "dataset" (strict: every class of the dataset, base and new).
    cfg.TRAINER.EMPL.VOCAB_EXCLUDE = "training"
    cfg.TRAINER.EMPL.OPEN_LOSS_WEIGHT = 0.1  # weight of L_out (the paper's lambda)
    # L_in over the anchor and its samples: "mixture" (the NLL of their mean softmax) or
    # "per_prompt" (the mean of each prompt's cross-entropy: the anchor must classify too).
    # EMPL_ProDA: ProDA's Gaussian bound over all of them pooled ("mixture") or over each chain
    # position's prompt sets, the anchors' bound being ProDA's own loss ("per_prompt").
    cfg.TRAINER.EMPL.IN_LOSS = "mixture"
    cfg.TRAINER.EMPL.OPEN_LOSS = "entropy"  # entropy, energy or none
    # anchor (the learned prompt alone: chosen on validation, docs/EMPL.md), sample (SGLD per
    # test image: inductive), sample_batch (conditioned on the test batch: transductive; batches
    # in a seeded random order) or amortized (trainers/empl.py)
    cfg.TRAINER.EMPL.INFERENCE = "anchor"
    cfg.TRAINER.EMPL.TEST_SGLD_STEPS = -1  # SGLD steps at evaluation; < 0: SGLD_STEPS
    # INFERENCE sample: k > 0 samples each image's prompts on its k classes with the highest
    # anchor logits only (the energy and the samples' features), and re-ranks those k by the
    # mixture; the other classes stay below them. 0: every class (the cost grows with the classes).
    cfg.TRAINER.EMPL.TEST_TOP_K = 0
    # Two-stage training (the paper starts EMPL from a trained CoOp or ProDA): "" starts from
    # the host's CTX_INIT; a folder (a host training run's --output-dir) starts from that run's
    # last epoch, then EMPL trains for its own OPTIM budget; "auto" lets tools/run_protocol.py
    # (compare.py, quickstart.sh) train the host on the same data, seed and shots first and
    # pass its folder.
    cfg.TRAINER.EMPL.HOST_RUN = ""
    # With HOST_RUN auto: the host's config (a name under configs/trainers/<host>/) the driver
    # trains; "" = the config name the driver was given, else the host's own for the protocol.
    cfg.TRAINER.EMPL.HOST_CONFIG = ""


def check_empl_cfg(empl) -> None:
    """Clear errors for TRAINER.EMPL values the code cannot run with."""
    if empl.CONDITION not in CONDITIONS:
        raise UserValueError(f"TRAINER.EMPL.CONDITION must be one of {CONDITIONS}, got {empl.CONDITION!r}")
    if empl.INFERENCE not in INFERENCE_MODES:
        raise UserValueError(f"TRAINER.EMPL.INFERENCE must be one of {INFERENCE_MODES}, got {empl.INFERENCE!r}")
    if empl.SGLD_GRADIENT not in SGLD_GRADIENTS:
        raise UserValueError(f"TRAINER.EMPL.SGLD_GRADIENT must be one of {SGLD_GRADIENTS}, got {empl.SGLD_GRADIENT!r}")
    if empl.OPEN_LOSS not in OPEN_LOSSES:
        raise UserValueError(f"TRAINER.EMPL.OPEN_LOSS must be one of {OPEN_LOSSES}, got {empl.OPEN_LOSS!r}")
    if empl.BACKPROP not in BACKPROPS:
        raise UserValueError(f"TRAINER.EMPL.BACKPROP must be detach or full, got {empl.BACKPROP!r}")
    for key in ("N_CHAINS", "SGLD_STEPS", "N_UNSEEN", "TEST_TOP_K"):
        if empl[key] < 0:
            raise UserValueError(f"TRAINER.EMPL.{key} must be >= 0, got {empl[key]}")
    if empl.SGLD_STEP_SIZE <= 0 or empl.ENERGY_TEMP <= 0:
        raise UserValueError("TRAINER.EMPL.SGLD_STEP_SIZE and ENERGY_TEMP must be > 0")
    if empl.IN_LOSS not in IN_LOSSES:
        raise UserValueError(f"TRAINER.EMPL.IN_LOSS must be one of {IN_LOSSES}, got {empl.IN_LOSS!r}")
    if empl.VOCAB_EXCLUDE not in VOCAB_EXCLUDES:
        raise UserValueError(f"TRAINER.EMPL.VOCAB_EXCLUDE must be one of {VOCAB_EXCLUDES}, got {empl.VOCAB_EXCLUDE!r}")
    if empl.PERSISTENT and empl.CONDITION == "image":
        raise UserValueError(
            "TRAINER.EMPL.PERSISTENT True continues each training step's chains from the previous step's, "
            "which needs chains that outlive a batch; with CONDITION image the chains belong to the images of "
            "one batch: set PERSISTENT False, or CONDITION batch"
        )
