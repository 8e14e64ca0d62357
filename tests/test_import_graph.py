"""The package's modules import each other without circles.

The graph is read from the source (``ast``), so imports inside functions
count too: they hide a circle from Python's import machinery, not from a
reader.
"""
import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / 'mmspd'


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def package_modules() -> Dict[str, Path]:
    return {module_name(path): path for path in PACKAGE_ROOT.rglob('*.py')}


def compiled_modules() -> Set[str]:
    """Names of the package's C++ extensions (built or not), from setup.py:
    importing one imports no Python module of the package."""
    setup = (PACKAGE_ROOT.parent / 'setup.py').read_text()
    return set(re.findall(r"Extension\(\s*'([\w.]+)'", setup))


def imported_modules(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The package's modules that ``name`` (at ``path``) imports."""
    is_package = path.name == '__init__.py'
    package = name if is_package else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                base = '.'.join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ''
            # `from pkg import sub` imports the submodule; a name imports pkg
            targets = [f'{base}.{alias.name}'
                       if f'{base}.{alias.name}' in known else base
                       for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known)
    found.discard(name)
    return found


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import circle of ``graph`` as a list of names, or ``[]``."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: finished
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def import_graph() -> Dict[str, Set[str]]:
    modules = package_modules()
    known = set(modules) | compiled_modules()
    return {name: imported_modules(name, path, known) - compiled_modules()
            for name, path in modules.items()}


def test_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert find_cycle(graph) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) == []


def test_reader_resolves_relative_and_function_level_imports(tmp_path):
    source = tmp_path / 'mod.py'
    source.write_text('from . import _x\nfrom ._y import f\n'
                      'def g():\n    from .z import h\n')
    known = {'pkg._x', 'pkg._y', 'pkg.z', 'pkg'}
    assert imported_modules('pkg.mod', source, known) == {
        'pkg._x', 'pkg._y', 'pkg.z'}


def test_package_has_no_import_circle():
    graph = import_graph()
    assert 'mmspd.optim.adam_spd' in graph  # the walk found the package
    assert compiled_modules() == {'mmspd.optim._adam_spd_cpu'}
    cycle = find_cycle(graph)
    if cycle:
        pytest.fail('import circle: ' + ' -> '.join(cycle))
