"""The service's one version: ``pyproject.toml``'s, as installed.

Read from the installed package's metadata, so ``balances --version``, the OpenAPI document
and the ``balances_build_info`` metric cannot disagree with what was released.
"""

from functools import cache
from importlib.metadata import version


@cache
def service_version() -> str:
    return version("balances")
