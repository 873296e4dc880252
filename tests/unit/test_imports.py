"""The import graph: ``ser_core`` has no cycles (imports inside functions included) and imports neither Ray nor click."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules(package: str) -> dict[str, Path]:
    """``dotted name -> file`` of every module of ``package``."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, anywhere in its file (a function's body too), by absolute dotted name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])])
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def graph(package: str) -> dict[str, set[str]]:
    """``module -> the modules of package it imports``."""
    found = modules(package)
    return {name: {m for m in imported(name, path) if m in found and m != name} for name, path in found.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``edges`` as the modules along it, or ``None``.

    >>> cycle({"a": {"b"}, "b": {"a"}})
    ['a', 'b', 'a']
    >>> cycle({"a": {"b"}, "b": set()}) is None
    True
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], node, nxt] if nxt in path else [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [])):
            return found
    return None


@pytest.mark.parametrize("name", sorted(modules("ser_core")))
def test_every_library_module_imports(name):
    importlib.import_module(name)


def test_the_library_has_no_import_cycle():
    assert cycle(graph("ser_core")) is None


def test_the_library_imports_neither_ray_nor_click():
    found = modules("ser_core")
    outside = {name: sorted(m for m in imported(name, path) if m.split(".")[0] in ("ray", "click", "jobs"))
               for name, path in found.items()}
    assert {name: ms for name, ms in outside.items() if ms} == {}


def test_every_library_error_derives_from_ser_error():
    from ser_core.errors import SerError

    for name in modules("ser_core"):
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == name:
                assert issubclass(value, SerError), f"{name}.{value.__name__}"


def test_a_model_kind_is_registered_once_and_unknown_kinds_are_bundle_errors():
    from ser_core.errors import BundleError
    from ser_core.models.kinds import CNN, get_kind, register_kind

    assert get_kind("cnn") is CNN and get_kind("whisper-head").card.__name__ == "whisper_head_card"
    with pytest.raises(ValueError, match="already registered"):
        register_kind(CNN)
    with pytest.raises(BundleError, match="unknown model kind 'wav2vec-head'"):
        get_kind("wav2vec-head")


CLICK_WIRING = {"jobs.cli", "jobs.options", "jobs.submit"}
"""Job modules that are click wiring throughout (``ser submit`` has no ``run_*``: it drives the Ray job client)."""


def test_only_click_commands_raise_click_errors():
    """``run_*`` and every other job function raise library errors, so they can be called without click."""
    raising = []
    for name, path in modules("jobs").items():
        if name in CLICK_WIRING:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not any("click" in ast.unparse(d) for d in node.decorator_list):
                raising += [f"{name}.{node.name}" for inner in ast.walk(node)
                            if isinstance(inner, ast.Raise) and inner.exc is not None and "click." in ast.unparse(inner.exc)]
    assert raising == []


SHARED_WIRING = {"jobs", "jobs.options", "jobs.ray_runtime"}


def test_no_job_imports_another():
    edges = graph("jobs")
    assert {name: sorted(deps - SHARED_WIRING) for name, deps in edges.items()
            if name not in ("jobs.cli", *SHARED_WIRING) and deps - SHARED_WIRING} == {}


def entry_point(name: str) -> bool:
    """A name ``bench/`` may take from ``jobs``: a ``run_*`` function, a job config, a command.

    >>> [entry_point(n) for n in ("run_train", "TrainJobConfig", "cli", "make_archive", "scan_windows")]
    [True, True, True, False, False]
    """
    return name.startswith("run_") or (name[:1].isupper() and name.endswith("Config")) or name in ("cli", "main")


def test_bench_takes_only_entry_points_from_jobs():
    taken = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                taken += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] == "jobs"]
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "jobs":
                taken += [f"{path.name}: {node.module}.{a.name}" for a in node.names if not entry_point(a.name)]
    assert taken == []


MAX_FUNCTION_LINES = 80


def test_no_function_in_the_library_or_the_jobs_is_over_80_lines():
    long = []
    for path in sorted([*(ROOT / "ser_core").rglob("*.py"), *(ROOT / "jobs").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []
