"""yacs ``CfgNode`` with short, explicit errors for unknown keys and mistyped values."""
from __future__ import annotations

import os
import re
import sys
from difflib import SequenceMatcher
from typing import Optional

import yaml
from yacs.config import CfgNode as _YacsCfgNode

from dassl.utils import UserError, UserKeyError, UserValueError

from .retired_keys import RETIRED_KEYS

__all__ = ["CfgNode", "ConfigKeyError"]


class ConfigKeyError(UserKeyError):
    """Unknown config key. Subclasses KeyError, which is what yacs raises."""


def _input_error(err: Exception, source: Optional[str]) -> UserValueError:
    """yacs's own complaint about a config file or the opts (an odd-length override list, a
    renamed or deprecated key) as a user error that names where it came from."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return UserValueError(f"{text} (in {source})" if source else text)


def _suggest(root: _YacsCfgNode, key: str) -> Optional[str]:
    """Closest existing key: fix the first unknown component among its siblings."""
    node, parts = root, key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, _YacsCfgNode) and part in node:
            node = node[part]
            continue
        if not isinstance(node, _YacsCfgNode) or not node:
            return None
        best = max(node.keys(), key=lambda c: SequenceMatcher(None, part, c).ratio())
        if SequenceMatcher(None, part, best).ratio() < 0.6:
            return None
        return ".".join(parts[:i] + [best] + parts[i + 1:])
    return None


# yacs: "Type mismatch (<class 'float'> vs. <class 'int'>) with values (0.1 vs. 0) for config key: K"
_TYPE_MISMATCH = re.compile(
    r"Type mismatch \(<class '(\w+)'> vs\. <class '(\w+)'>\) with values \((.*) vs\. (.*)\) for config key: (\S+)"
)


class CfgNode(_YacsCfgNode):
    """Drop-in yacs CfgNode for the *root* config; only error messages differ.

    Only the root uses this class: yacs requires a YAML sub-node and the node
    it replaces to have the exact same type, and YAMLs are loaded (and
    extend_cfg adds nodes) as plain ``yacs.config.CfgNode``.

    yacs reports a bad key in a YAML as ``KeyError('Non-existent config key: X')``
    and in an override list as ``AssertionError('Non-existent key: X')``; both
    become :class:`ConfigKeyError` with a suggestion and a hint to fix it.
    """

    @classmethod
    def _decode_cfg_value(cls, value):
        # yacs turns dict values into ``cls`` nodes; keep them plain yacs nodes.
        return _YacsCfgNode._decode_cfg_value(value)

    def _unknown_key(self, key: str, source: Optional[str]) -> ConfigKeyError:
        msg = f"Non-existent config key: {key}"
        msg += f" (in {source})." if source else "."
        guess = _suggest(self, key)
        if guess is not None:
            msg += f" Did you mean {guess}?"
        msg += " Fix the spelling, or declare the key before merging (in its method's add_config beside the trainer; in a CoOp checkout, train.py's extend_cfg)."
        return ConfigKeyError(msg)

    def _merge(self, merge_fn, arg, source: Optional[str]) -> None:
        prefixes = ("Non-existent config key: ", "Non-existent key: ")
        try:
            merge_fn(arg)
        except UserError:
            raise
        except ValueError as e:
            match = _TYPE_MISMATCH.match(str(e))
            if match is None:
                raise _input_error(e, source) from None
            expected, given, old, new, key = match.groups()
            where = f" in {source}" if source else ""
            hint = f" (write {new}.0)" if (expected, given) == ("float", "int") else ""
            article = "an" if expected[0] in "aeiou" else "a"
            raise UserValueError(
                f"{key} takes {article} {expected} (default {old}), got {given} {new}{where}: "
                f"give {article} {expected}{hint}"
            ) from None
        except (KeyError, AssertionError) as e:
            text = str(e.args[0]) if e.args else ""
            if not text.startswith(prefixes):
                raise _input_error(e, source) from None
            key = text.split(": ", 1)[1]
            raise self._unknown_key(key, source) from None

    def merge_from_file(self, cfg_filename: str) -> None:
        if not os.path.isfile(cfg_filename):
            raise FileNotFoundError(f"config file {cfg_filename} not found (working directory {os.getcwd()}): "
                                    "check the --config-file / --dataset-config-file path")
        cfg = self._with_new_names(load_with_bases(cfg_filename), cfg_filename)
        self._merge(super().merge_from_other_cfg, cfg, cfg_filename)

    def merge_from_other_cfg(self, cfg_other) -> None:
        cfg_other = self._with_new_names(_without(cfg_other, RETIRED_KEYS), "a saved config")
        self._merge(super().merge_from_other_cfg, cfg_other, None)

    def merge_from_list(self, cfg_list: list) -> None:
        if len(cfg_list) % 2 != 0:
            raise UserValueError(
                f"Config overrides must be KEY VALUE pairs, got an odd number of items: {cfg_list}"
            )
        renamed = self.renamed_keys()
        cfg_list = list(cfg_list)
        for i in range(0, len(cfg_list), 2):
            if cfg_list[i] in renamed:
                cfg_list[i] = _renamed_note(cfg_list[i], renamed[cfg_list[i]], "command-line opts")
        self._merge(super().merge_from_list, cfg_list, "command-line opts")

    def renamed_keys(self) -> dict:
        """{old dotted key: its new name}, as registered with yacs's register_renamed_key: a
        config that still uses an old name is read as the new one (yacs itself would refuse it)."""
        registered = self.__dict__[_YacsCfgNode.RENAMED_KEYS].items()
        return {old: new[0] if isinstance(new, tuple) else new for old, new in registered}

    def _with_new_names(self, cfg: _YacsCfgNode, source: str) -> _YacsCfgNode:
        """cfg, or a copy of it with each renamed key it holds under its new name."""
        present = {old: new for old, new in self.renamed_keys().items() if _has(cfg, old)}
        if not present:
            return cfg
        cfg = cfg.clone()
        for old, new in present.items():
            if _has(cfg, new):
                raise UserValueError(f"{source} sets both {new} and its old name {old}: keep {new}")
            value = _pop(cfg, old)
            node = cfg
            for part in new.split(".")[:-1]:
                node = node.setdefault(part, _YacsCfgNode())
            node[new.split(".")[-1]] = value
            _renamed_note(old, new, source)
        return cfg


# A config file's key naming the file it builds on, as in detectron2: the base (a path relative to
# the file) is read first, then the file's own keys override it; a base may have a base.
BASE_KEY = "_BASE_"


def load_with_bases(path: str, seen=()) -> _YacsCfgNode:
    """The config file's keys over those of its _BASE_ file(s), as plain yacs nodes."""
    try:
        with open(path, "r") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or err
        raise UserValueError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is not None and not isinstance(data, dict):
        raise UserValueError(f"config file {path} holds a YAML {type(data).__name__}, not KEY: VALUE entries: "
                             "write it as nested keys, as in configs/trainers/CoOp/vit_b16.yaml")
    cfg = _YacsCfgNode(data)  # plain nodes, see CfgNode's docstring
    base = cfg.pop(BASE_KEY, None)
    if base is None:
        return cfg
    base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
    if not os.path.isfile(base_path):
        raise FileNotFoundError(f"{BASE_KEY} {base} of config file {path} not found ({base_path}): "
                                "give a path relative to that file")
    if base_path in seen:
        raise UserValueError(f"{BASE_KEY} of config file {path} leads back to {base_path}: remove the cycle")
    return _override(load_with_bases(base_path, seen + (os.path.normpath(path),)), cfg)


def _override(base: dict, cfg: dict) -> dict:
    """base with cfg's values over it, node by node (cfg may add keys base lacks)."""
    for key, value in cfg.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _override(base[key], value)
        else:
            base[key] = value
    return base


def _renamed_note(old: str, new: str, source: str) -> str:
    print(f"note: {old} is now {new} (in {source}); the old name still works", file=sys.stderr)
    return new


def _has(cfg: dict, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _pop(cfg: dict, key: str):
    node = cfg
    for part in key.split(".")[:-1]:
        node = node[part]
    return node.pop(key.split(".")[-1])


def _without(cfg: _YacsCfgNode, keys) -> _YacsCfgNode:
    """``cfg``, or a copy of it without the dotted ``keys`` it holds."""
    present = [key for key in keys if _has(cfg, key)]
    if not present:
        return cfg
    cfg = cfg.clone()
    for key in present:
        _pop(cfg, key)
    return cfg
