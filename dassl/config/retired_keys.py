"""Keys of Dassl's defaults that defaults.py dropped (prefixes: a node and everything under it).

Not declared, so a YAML or opts setting one is an error; ``CfgNode.merge_from_other_cfg`` (a
whole config, e.g. the dump in the log.txt of a run written before they were dropped) ignores
them. Kept apart from defaults.py, which imports cfg_node.py, so that cfg_node.py can read them.
"""
RETIRED_KEYS = (
    "DATASET.NUM_LABELED", "DATASET.VAL_PERCENT", "DATASET.STL10_FOLD", "DATASET.CIFAR_C_TYPE",
    "DATASET.CIFAR_C_LEVEL", "DATASET.ALL_AS_UNLABELED", "DATALOADER.TRAIN_U", "TRAIN.COUNT_ITER",
    "TRAINER.MCD", "TRAINER.MME", "TRAINER.CDAC", "TRAINER.SE", "TRAINER.M3SDA", "TRAINER.DAEL",
    "TRAINER.CROSSGRAD", "TRAINER.DDAIG", "TRAINER.DAELDG", "TRAINER.DOMAINMIX", "TRAINER.ENTMIN",
    "TRAINER.MEANTEACHER", "TRAINER.MIXMATCH", "TRAINER.FIXMATCH",
    # MaPLe's IVLP and VPT baselines, declared by this project's train.py until no code read them.
    "TRAINER.IVLP", "TRAINER.VPT",
)
