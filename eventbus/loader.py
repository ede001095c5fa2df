"""Finding the `App` a user points at: ``MODULE[:ATTR]`` (``processors.shop`` or ``processors.shop:app``)."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from types import ModuleType

from eventbus.app import App
from eventbus.errors import ConfigurationError


def _where_it_failed(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    if not user:
        return ""
    last = user[-1]
    return f" (at {os.path.relpath(last.filename)}:{last.lineno})"


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
        if exc.name and module_name.startswith(exc.name):
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
