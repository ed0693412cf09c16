"""Compact re-implementation of the subset of Dassl.pytorch used by CoOp-style code.

Module paths, class names and function signatures mirror
https://github.com/KaiyangZhou/Dassl.pytorch so that code written for the
real package (CoOp, CoCoOp, MaPLe trainers) runs unchanged.
"""

__version__ = "0.6.3"
