"""Name -> object registry (after fvcore / Dassl)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from .errors import UserKeyError
from .tools import get_most_similar_str_to_a_from_b

__all__ = ["Registry"]


class Registry:
    """Map names to classes/functions so that configs can refer to them by name.

    Usage::

        BACKBONE_REGISTRY = Registry("BACKBONE")

        @BACKBONE_REGISTRY.register()
        class MyBackbone(nn.Module): ...

        BACKBONE_REGISTRY.register(OtherBackbone)   # function-call form
        BACKBONE_REGISTRY.get("MyBackbone")
    """

    def __init__(self, name: str):
        self._name = name
        self._obj_map: Dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered in "{self._name}" registry'
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Optional[Callable]:
        """Register ``obj`` under its ``__name__``; with no ``obj``, act as a decorator."""
        if obj is None:
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return None

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            msg = f'Object name "{name}" does not exist in "{self._name}" registry'
            guess = get_most_similar_str_to_a_from_b(name, self._obj_map)
            if guess is not None:
                msg += f' (did you mean "{guess}"? available: {sorted(self._obj_map)})'
            raise UserKeyError(msg)
        return self._obj_map[name]

    def registered_names(self) -> List[str]:
        return list(self._obj_map.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __repr__(self) -> str:
        return f"Registry({self._name!r}, {sorted(self._obj_map)})"
