"""Loading an addon file (`mitmlab attacker --addon FILE`, and every attack of addons/): whatever the
file does wrong, one line that says what, with its exception's type and message.

mitmproxy's own loader (`mitmproxy.addons.script.load_script`) logs an import error instead of raising
it, and returns from its `finally`, which swallows SystemExit and other BaseExceptions: a file that
calls `sys.exit()` looked like one that defines no addons. This loader runs the file the same way
(its folder on sys.path, the module named `__mitmproxy_script__.<name>`, as `mitmdump -s` does) and
raises `AddonFileError` instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from mitmproxy import exceptions


class AddonFileError(Exception):
    """The addon file could not be run, defines no addons, or one of its hooks raised while starting."""


def _one_line(exc: BaseException) -> str:
    words = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {words}" if words else type(exc).__name__


def load(path: Path) -> ModuleType:
    """Run the file and return it as a module with a non-empty `addons` list."""
    name = f"__mitmproxy_script__.{path.stem}"
    sys.modules.pop(name, None)
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader=loader)
    if spec is None:
        raise AddonFileError(f"addon {path.name} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    saved_path = list(sys.path)
    sys.path.insert(0, str(path.parent))
    try:
        loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the file's own code: SystemExit included, it says nothing about us
        raise AddonFileError(f"addon {path.name} failed to load: {_one_line(exc)}") from None
    finally:
        sys.path[:] = saved_path
    addons = getattr(module, "addons", [])
    if not isinstance(addons, list | tuple):
        kind = type(addons).__name__
        raise AddonFileError(f"addon {path.name}: addons is {kind}, not a list of addon objects")
    if not addons:
        raise AddonFileError(f"addon {path.name} defines no addons = [...] (a list of addon objects)")
    if not getattr(module, "name", None):
        module.name = str(path)  # type: ignore[attr-defined]  # mitmproxy knows an addon by its name
    return module


@contextmanager
def its_hooks(path: Path) -> Iterator[None]:
    """Around calls into the addon's hooks (load, configure, running): what they raise becomes one line.
    `OptionsError` passes: it is the addon refusing an option's value, in its own words."""
    try:
        yield
    except exceptions.OptionsError:
        raise
    except Exception as exc:
        raise AddonFileError(f"addon {path.name} failed to load: {_one_line(exc)}") from None
