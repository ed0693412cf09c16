"""The config keys of the trainers, added to Dassl's defaults: each method declares its node
beside its trainer (`add_config` in coop.py, cocoop.py, maple.py, kgcoop.py, promptsrc.py,
proda.py; EMPL's in empl_config.py, beside empl.py); this adds them all and the backbone keys the trainers share.

launch.py's extend_cfg (train.py's config set-up) calls `add_method_config(cfg)`; so does a CoOp
checkout that these trainers are dropped into (README, "Using these trainers in an existing CoOp
checkout"): the nodes its own extend_cfg declares (TRAINER.COOP, COCOOP, MAPLE) stand. Every EMPL
key is explained in the README ("EMPL configuration") and docs/EMPL.md.
"""
from . import cocoop, coop, empl_config, kgcoop, maple, proda, promptsrc

# In the order they are declared: KgCoOp adds a key to CoOp's node.
METHODS = (coop, cocoop, maple, kgcoop, promptsrc, proda, empl_config)


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
    for method in METHODS:
        method.add_config(cfg)
