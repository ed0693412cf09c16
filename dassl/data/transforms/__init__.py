from .transforms import AVAI_CHOICES, INTERPOLATION_MODES, RANDOM_CHOICES, build_transform, random_choices

__all__ = ["AVAI_CHOICES", "INTERPOLATION_MODES", "RANDOM_CHOICES", "build_transform", "random_choices"]
