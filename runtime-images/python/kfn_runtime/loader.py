"""Imports the handler ``module.function`` from the task root, as Lambda's Python runtime does.

Failures become :class:`InitError` carrying the error shape Lambda reports for them, so the server
can answer readiness probes and invocations with it instead of crashing in a restart loop.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from kfn_runtime import errors


class InitError(Exception):
    """The handler could not be loaded; ``shape`` is what callers are told."""

    def __init__(self, shape: errors.ErrorShape) -> None:
        super().__init__(f"{shape['errorType']}: {shape['errorMessage']}")
        self.shape = shape


def search_path(task_root: str) -> list[str]:
    """Where handler code and its dependencies are looked up: the task root first, then
    ``/opt/python`` (the function's own dependencies, above its layers' files there), then the
    layers' site directory ``/opt/python/lib/python3.X/site-packages``. Lambda looks in the site
    directory before ``/opt/python``; kfn the other way round, so that the function's
    dependencies win over a layer's copy of a package, as a Lambda function's package does.

    ``KFN_OPT_ROOT`` stands in for ``/opt`` only in tests of the runtime outside its image.
    """
    opt = os.environ.get("KFN_OPT_ROOT") or "/opt"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [
        task_root,
        os.path.join(task_root, "python"),
        os.path.join(opt, "python"),
        os.path.join(opt, "python", "lib", version, "site-packages"),
    ]


def setup_sys_path(task_root: str) -> None:
    """Puts the task root and layer folders at the front of ``sys.path``, in Lambda's order."""
    for entry in reversed(search_path(task_root)):
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def load_handler(spec: str) -> Callable[..., Any]:
    """The callable named by ``spec`` (``pkg/mod.func`` and ``pkg.mod.func`` both work)."""
    module_name, sep, function_name = spec.rpartition(".")
    if not sep or not module_name or not function_name:
        raise InitError(
            errors.shape(
                errors.MALFORMED_HANDLER_NAME,
                f"Bad handler '{spec}': not enough values to unpack (expected 2, got 1)",
            )
        )
    # Lambda names the module in its messages as the handler spells it (``pkg/mod``).
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise InitError(
            errors.shape(
                errors.USER_CODE_SYNTAX_ERROR,
                f"Syntax error in module '{module_name}': {exc}",
                trace,
            )
        ) from exc
    except ImportError as exc:
        raise InitError(
            errors.shape(
                errors.IMPORT_MODULE_ERROR,
                f"Unable to import module '{module_name}': {exc}",
                errors.from_exception(exc)["stackTrace"],
            )
        ) from exc
    except Exception as exc:
        # Module-level code raised: Lambda reports the exception itself.
        raise InitError(errors.from_exception(exc)) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitError(
            errors.shape(
                errors.HANDLER_NOT_FOUND,
                f"Handler '{function_name}' missing on module '{module_name}'",
            )
        )
    if not callable(handler):
        raise InitError(
            errors.shape(
                errors.HANDLER_NOT_FOUND,
                f"Handler '{function_name}' on module '{module_name}' is not callable",
            )
        )
    return handler  # type: ignore[no-any-return]
