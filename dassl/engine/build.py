from dassl.utils import Registry, UserValueError, get_most_similar_str_to_a_from_b

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    """Instantiate the trainer registered under ``cfg.TRAINER.NAME``."""
    name = cfg.TRAINER.NAME
    available = TRAINER_REGISTRY.registered_names()
    if name not in available:
        msg = f'Trainer "{name}" is not registered. Available trainers: {sorted(available)}.'
        guess = get_most_similar_str_to_a_from_b(name, available) if name else None
        if guess is not None:
            msg += f' Did you mean "{guess}"?'
        msg += " Set it with --trainer / TRAINER.NAME and import the module that registers it."
        raise UserValueError(msg)
    if cfg.VERBOSE:
        print(f"Loading trainer: {name}")
    return TRAINER_REGISTRY.get(name)(cfg)
