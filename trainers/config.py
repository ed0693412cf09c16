"""Config keys this project adds to Dassl's defaults and CoOp's extend_cfg.

launch.py's extend_cfg (train.py's config set-up) calls `add_method_config(cfg)`; so does a CoOp
checkout that these trainers are dropped into (README, "Using these trainers in an existing CoOp checkout").
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

    # KgCoOp (Yao et al., CVPR 2023): CoOp's prompt learner and TRAINER.COOP keys, as in its
    # repository (htyao89/KgCoOp), plus W, the weight of the knowledge-guided term (its
    # train.py's default 1.0; its base-to-new scripts pass 8.0). Declared only where absent, so a
    # KgCoOp checkout's own declaration stands.
    if "COOP" in cfg.TRAINER and "W" not in cfg.TRAINER.COOP:
        cfg.TRAINER.COOP.W = 1.0

    # PromptSRC (Khattak et al., ICCV 2023): the node and defaults of muzairkhattak/PromptSRC's
    # train.py, declared only where absent (a PromptSRC checkout declares it itself).
    if "PROMPTSRC" not in cfg.TRAINER:
        cfg.TRAINER.PROMPTSRC = CN()
        cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4  # vision prompt tokens
        cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4  # text prompt tokens
        cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"
        cfg.TRAINER.PROMPTSRC.PREC = "fp16"
        cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9  # blocks with vision prompts (1 = shallow)
        cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9  # blocks with text prompts (1 = shallow)
        cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25  # L1 between learned and frozen text features
        cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10  # L1 between learned and frozen image features
        cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15  # Gaussian prompt aggregation: mean epoch
        cfg.TRAINER.PROMPTSRC.GPA_STD = 1  # ... and its standard deviation in epochs

    # ProDA (Lu et al., CVPR 2022): N prompts, Gaussian-bound loss (docs/BASELINES.md, "ProDA").
    # The defaults are "ProDA(x4)", the EMPL paper's ProDA rows; ProDA as its paper describes it
    # (32 prompts, 4 drawn per step, mixed class-name positions, per-dimension covariance,
    # decorrelated context-only prompts) is what configs/trainers/ProDA/vit_b16_ep50.yaml and the
    # other real-data ProDA configs select.
    cfg.TRAINER.PRODA = CN()
    cfg.TRAINER.PRODA.N_PROMPTS = 4  # N learned prompts, "ProDA(x4)"; the ProDA paper's 32
    cfg.TRAINER.PRODA.N_CTX = 16
    cfg.TRAINER.PRODA.CTX_INIT = ""
    cfg.TRAINER.PRODA.PREC = "fp16"
    cfg.TRAINER.PRODA.ORTHO_WEIGHT = 0.1  # weight of the decorrelation term (CLIP_Calibration's ALPHA)
    # Prompts drawn (without replacement, cycling through all N) per training step; 0 = all N.
    cfg.TRAINER.PRODA.PROMPT_BATCH = 0
    # Where each prompt puts the class name: end, middle, front (all prompts), or mix (the first
    # quarter front, the second quarter middle, the rest end, as ProDA).
    cfg.TRAINER.PRODA.CLASS_TOKEN_POSITION = "end"
    # The Gaussian bound's covariance across prompts: full (exact, 1/K) or diagonal (per feature
    # dimension, 1/(K+1), as CLIP_Calibration's ProDA).
    cfg.TRAINER.PRODA.COVARIANCE = "full"
    # The decorrelation term: class (mean cos^2 between the prompts' features of each class) or
    # context (mean |cos| between the features of the N prompts without a class name, as ProDA).
    cfg.TRAINER.PRODA.ORTHO_LOSS = "class"

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
    # Which class names leave the open vocabulary: "training" (the run's own classes, the paper's
    # setting: the names of classes it never sees, the test's new ones included, can be drawn) or
    # "dataset" (strict: every class of the dataset, base and new).
    cfg.TRAINER.EMPL.VOCAB_EXCLUDE = "training"
    cfg.TRAINER.EMPL.LAMBDA = 0.1  # weight of L_out
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
