"""Generic helpers (file I/O, logging, meters, registry, torch tools)."""
from .tools import *  # noqa: F401,F403
from .logger import *  # noqa: F401,F403
from .meters import *  # noqa: F401,F403
from .registry import *  # noqa: F401,F403
from .torchtools import *  # noqa: F401,F403
from .distributed import *  # noqa: F401,F403
from .errors import *  # noqa: F401,F403
