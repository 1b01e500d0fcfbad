"""Concept-erasure techniques. Each is one module in this folder registering itself with
``@TECHNIQUES.register``; every module here is imported with the package (a new technique is
one new file). Shared pieces (``base``, ``checkpoint``, ``closed_form``, ``prior``, ``mace_config``,
``mace_cfr``) register nothing.
"""

from erasekit.registry import import_package_modules
from erasekit.techniques.base import Technique

import_package_modules(__name__)

__all__ = ["Technique"]
