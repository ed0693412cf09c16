"""Config keys this project adds to Dassl's defaults and CoOp's extend_cfg.

train.py's extend_cfg calls `add_method_config(cfg)`; so does a CoOp checkout that these
trainers are dropped into (README, "Using these trainers in an existing CoOp checkout").
Every key is explained in the README ("EMPL configuration") and docs/EMPL.md.
"""
from yacs.config import CfgNode as CN


def add_method_config(cfg):
    # A local CLIP checkpoint file (JIT archive or state dict). Empty = the clip package's
    # download cache for MODEL.BACKBONE.NAME.
    cfg.MODEL.BACKBONE.CHECKPOINT = ""
    # Compute a frozen image encoder's features once per process (trainers/feature_cache.py);
    # needs deterministic INPUT.TRANSFORMS. The bundled benchmark's configs turn it on.
    cfg.MODEL.BACKBONE.CACHE_IMAGE_FEATURES = False
    # Run PREC fp16 and amp as on a GPU when the device is a CPU: fp16 makes the CLIP weights
    # half, amp uses CPU autocast (fp16, or bfloat16 where CPU autocast lacks fp16) with a
    # GradScaler. False (the default): on CPU both run in fp32, with a warning for fp16. For
    # checking the half-precision path without a GPU (tests/test_half_precision.py); CPU half
    # kernels are slower than fp32 ones. Code reads it with .get(): a CoOp checkout's config
    # may lack it.
    cfg.MODEL.BACKBONE.HALF_ON_CPU = False

    # ProDA (Lu et al., CVPR 2022): K prompt sets, Gaussian-bound loss (docs/EMPL.md).
    cfg.TRAINER.PRODA = CN()
    cfg.TRAINER.PRODA.N_PROMPTS = 4  # K, "ProDA(x4)"; the ProDA paper used 32
    cfg.TRAINER.PRODA.N_CTX = 16
    cfg.TRAINER.PRODA.CTX_INIT = ""
    cfg.TRAINER.PRODA.PREC = "fp16"
    cfg.TRAINER.PRODA.ORTHO_WEIGHT = 0.1  # weight of the prompts' orthogonality penalty

    # EMPL (docs/EMPL.md; README "EMPL configuration"). Host keys stay in TRAINER.COOP/PRODA.
    cfg.TRAINER.EMPL = CN()
    # The sampler's defaults were chosen on the bundled benchmark's validation data (docs/EMPL.md,
    # "Choosing the defaults"); PRIOR_STD, INIT_STD and SGLD_STEP_SIZE are in units of rms(anchor),
    # so they carry over to other CLIPs; SGLD_LAYERS does not (re-check it on a validation split).
    cfg.TRAINER.EMPL.N_PROMPTS = 4  # N chains (samples) per anchor; 0 turns sampling off
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
    cfg.TRAINER.EMPL.LAMBDA = 0.1  # weight of L_out
    cfg.TRAINER.EMPL.OPEN_LOSS = "entropy"  # entropy, energy or none
    cfg.TRAINER.EMPL.INFERENCE = "sample"  # sample, amortized or anchor
