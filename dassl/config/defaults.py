"""Default configuration: Dassl.pytorch's defaults.py (same keys and values), less what only
Dassl's domain-adaptation and semi-supervised code uses: its trainers' nodes (TRAINER.MCD ...
TRAINER.FIXMATCH), DATALOADER.TRAIN_U, TRAIN.COUNT_ITER and the SSL datasets' DATASET keys.

Every key a CoOp, CoCoOp or MaPLe config (YAML or command-line opts) sets is declared, so their
configs merge. A run's config dump written before those keys were dropped still merges
(retired_keys.py, CfgNode.merge_from_other_cfg).
"""
from yacs.config import CfgNode as CN

from .cfg_node import CfgNode

_C = CfgNode()  # only the root is our subclass (see cfg_node.py)
_C.VERSION = 1
# Directory for log.txt, tensorboard files and checkpoints
_C.OUTPUT_DIR = "./output"
# Directory of a previous run to resume from
_C.RESUME = ""
# Negative: do not fix the seed
_C.SEED = -1
_C.USE_CUDA = True
# Print detailed information (trainer, dataset, evaluator, ...)
_C.VERBOSE = True

# ---------------------------------------------------------------- Input
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"
_C.INPUT.TRANSFORMS = ()  # names, see dassl/data/transforms
_C.INPUT.NO_TRANSFORM = False  # if True, tfm_train and tfm_test are None
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # ImageNet statistics
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4  # random crop
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # random resized crop
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0  # gaussian noise
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2  # random gray scale probability
_C.INPUT.GB_P = 0.5  # gaussian blur probability
_C.INPUT.GB_K = 21  # gaussian blur kernel size (odd)

# ---------------------------------------------------------------- Dataset
_C.DATASET = CN()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_SHOTS = -1  # few-shot: images per class

# ---------------------------------------------------------------- Data loader
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1  # augmented views per image (training)
_C.DATALOADER.RETURN_IMG0 = False  # also return the un-augmented image
# Ours: True reads every image of every split once when the data are built and drops the
# unreadable ones (reporting how many); False (Dassl) stops at the first unreadable image.
_C.DATALOADER.SKIP_CORRUPT_IMAGES = False
# Ours: True keeps each image's transformed tensor(s) in memory after its first read, for the
# whole process: later epochs, and later runs of an in-process sweep, skip decoding and
# transforming. Only for deterministic INPUT.TRANSFORMS (an error otherwise) and data that fit
# in memory (the bundled benchmark's 32x32 images).
_C.DATALOADER.CACHE_IMAGES = False
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0  # RandomDomainSampler; 0/-1 = all domains
_C.DATALOADER.TRAIN_X.N_INS = 16  # RandomClassSampler: instances per class
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

# ---------------------------------------------------------------- Model
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""
_C.MODEL.BACKBONE.PRETRAINED = True
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

# ---------------------------------------------------------------- Optimization
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9  # also used by adamw / radam
_C.OPTIM.ADAM_BETA2 = 0.999
# STAGED_LR: layers not in NEW_LAYERS get LR * BASE_LR_MULT
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"
_C.OPTIM.STEPSIZE = (-1,)  # -1 or 0: stepsize = MAX_EPOCH
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1  # > 0 enables warmup
_C.OPTIM.WARMUP_TYPE = "linear"  # linear or constant
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
# True: the main scheduler starts counting at 0 after warmup,
# False: it starts at WARMUP_EPOCH
_C.OPTIM.WARMUP_RECOUNT = True

# ---------------------------------------------------------------- Train
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # epochs; <= 0: save the last epoch only
# Ours: also write a resumable checkpoint every N batches within an epoch
# (model.pth.tar-<epoch>-iter<batches done>, removed once superseded); 0 = off (Dassl's behaviour)
_C.TRAIN.CHECKPOINT_ITERS = 0
_C.TRAIN.PRINT_FREQ = 10  # batches
# Ours: also checkpoint the epochs CHECKPOINT_FREQ skips, so a killed run resumes from its last
# complete epoch; such a file is removed once the next one is written (final layout = Dassl's).
_C.TRAIN.RESUME_CHECKPOINTS = True
# Ours: a re-run on the same data. Once the dataset (its few-shot draw, cached by SEED) is built,
# every random number of the training (initialisation, batch order, sampling) is drawn from
# SEED + SEED_OFFSET; the output folder and the few-shot set stay those of SEED. Comparing such
# a re-run with the SEED run shows how far training randomness alone moves a result. 0 = off.
_C.TRAIN.SEED_OFFSET = 0

# ---------------------------------------------------------------- Test
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False  # saved to OUTPUT_DIR/cmat.pt
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"  # split for the final evaluation
_C.TEST.PROGRESS_BAR = True  # ours: tqdm bar while evaluating (rank 0, terminals only)
# last_step or best_val (best_val evaluates on val after every epoch)
_C.TEST.FINAL_MODEL = "last_step"

# ---------------------------------------------------------------- Trainers
_C.TRAINER = CN()
_C.TRAINER.NAME = ""

