"""Finding the `App` a user points at: ``MODULE[:ATTR]`` (``processors.shop`` or ``processors.shop:app``)."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import sysconfig
import traceback
from types import ModuleType

from eventbus.app import App
from eventbus.errors import ConfigurationError


def _library_directories() -> tuple[str, ...]:
    """Where Python's own modules, installed packages and eventbus live: not where a user's mistake is."""
    paths = sysconfig.get_paths()
    found = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths}
    found.add(os.path.dirname(os.path.abspath(__file__)))  # eventbus itself (not its parent: apps may live there)
    return tuple(os.path.join(os.path.realpath(d), "") for d in found)


def _where_it_failed(exc: BaseException) -> str:
    """Where in the user's code an import failed: the deepest frame outside Python's and the installed packages'
    code (json.loads raising is the user's call of it), else the deepest frame at all."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen ")]
    if not frames:
        return ""
    libraries = _library_directories()
    user = [f for f in frames if not os.path.realpath(f.filename).startswith(libraries)]
    last = (user or frames)[-1]
    filename = last.filename
    with contextlib.suppress(ValueError):  # on another drive, on Windows
        filename = os.path.relpath(filename)
    return f" (at {filename}:{last.lineno})"


def _syntax_error(exc: SyntaxError) -> str:
    """``SyntaxError in app.py, line 3: invalid syntax: x = = 1``: the user's file and line, and its text."""
    where = ""
    if exc.filename:
        filename = exc.filename
        if os.path.isabs(filename):
            with contextlib.suppress(ValueError):  # on another drive, on Windows
                filename = os.path.relpath(filename)
        where = f" in {filename}" + (f", line {exc.lineno}" if exc.lineno else "")
    text = (exc.text or "").strip()
    return f"{type(exc).__name__}{where}: {exc.msg}" + (f": {text}" if text else "")


def _import(module_name: str) -> ModuleType:
    """Import the user's module; what goes wrong is a `ConfigurationError` naming where in the user's code."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The module itself, or a package on its dotted path, is missing; any other name is missing from an
        # import inside the user's code (orders_app importing orders is not orders_app missing).
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigurationError(
                f"cannot find module {module_name!r} (looked in {os.getcwd()} and the installed packages)"
            ) from None
        raise ConfigurationError(f"importing {module_name!r} failed: {exc}{_where_it_failed(exc)}") from None
    except ConfigurationError as exc:
        raise ConfigurationError(f"{module_name}: {exc}") from None
    except SyntaxError as exc:  # where the user's code is wrong, not where eventbus imported it
        raise ConfigurationError(f"importing {module_name!r} failed: {_syntax_error(exc)}") from None
    except Exception as exc:  # the user's module raised while importing: report it, with where
        raise ConfigurationError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}{_where_it_failed(exc)}"
        ) from None


def load_app(spec: str) -> App:
    """Import ``MODULE[:ATTR]`` from the working directory and return its App; errors name what is wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigurationError(f"{spec!r} is not MODULE[:ATTR] (e.g. processors.shop or processors.shop:app)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import(module_name)
    if attr:
        found = getattr(module, attr, None)
        if found is None:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}")
        if not isinstance(found, App):
            raise ConfigurationError(f"{module_name}:{attr} is a {type(found).__name__}, not an eventbus App")
        return found
    apps = {name: value for name, value in vars(module).items() if isinstance(value, App)}
    if "app" in apps:
        return apps["app"]
    if len(apps) == 1:
        return next(iter(apps.values()))
    if not apps:
        raise ConfigurationError(f"module {module_name!r} defines no eventbus App (expected e.g. app = App('name'))")
    raise ConfigurationError(
        f"module {module_name!r} defines several Apps ({', '.join(sorted(apps))}); name one: {module_name}:ATTR"
    )
