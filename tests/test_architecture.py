"""The package's structure: import contracts (import-linter), and MXNet's private names
reached only through densenet.system.mxcompat."""
import ast
import os
import shutil
import subprocess
import sys

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11: import-linter depends on tomli there
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'densenet')
MXCOMPAT = os.path.join(PACKAGE, 'system', 'mxcompat.py')
# Underscore names that are documented public API.
PUBLIC_BY_DOCUMENTATION = {
    ('os', '_exit'), ('sys', '_getframe'),
    # namedtuple's methods and fields
    (None, '_asdict'), (None, '_replace'), (None, '_fields'), (None, '_make'),
    (None, '_field_defaults'),
}


def _lint_imports():
    here = os.path.join(os.path.dirname(sys.executable), 'lint-imports')
    return here if os.path.exists(here) else shutil.which('lint-imports')


def test_import_contracts_are_kept():
    """`lint-imports` (pyproject.toml's [tool.importlinter]): the packages depend
    downwards only, and only mxcompat imports MXNet's private modules."""
    command = _lint_imports()
    assert command, 'lint-imports is missing: install the test extra (pip install -e .[test])'
    result = subprocess.run([command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '0 broken' in result.stdout, result.stdout


def _is_private(name):
    return name.startswith('_') and not (name.startswith('__') and name.endswith('__'))


def _mxnet_private_modules():
    """Every private module of the installed mxnet whose ancestors are all public."""
    import importlib.util
    spec = importlib.util.find_spec('mxnet')
    top = os.path.dirname(spec.origin)
    found = set()
    for folder, dirs, files in os.walk(top):
        parts = ['mxnet'] + os.path.relpath(folder, top).split(os.sep)
        parts = [p for p in parts if p != '.']
        if any(_is_private(p) for p in parts):
            dirs[:] = []
            continue
        for d in dirs:
            if _is_private(d) and os.path.isfile(os.path.join(folder, d, '__init__.py')):
                found.add('.'.join(parts + [d]))
        for f in files:
            name, ext = os.path.splitext(f)
            if ext == '.py' and _is_private(name):
                found.add('.'.join(parts + [name]))
    return found


def test_forbidden_contract_lists_every_private_mxnet_module():
    """The forbidden contract names mxnet's private modules one by one (import-linter has
    no wildcard for 'a leading underscore'): the list must be the installed mxnet's."""
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        contracts = tomllib.load(f)['tool']['importlinter']['contracts']
    forbidden = next(c for c in contracts
                     if c['type'] == 'forbidden' and c['source_modules'] == ['densenet'])
    assert set(forbidden['forbidden_modules']) == _mxnet_private_modules()


class _PrivateAccess(ast.NodeVisitor):
    """Collects (line, text) of every use of another object's private attribute: `x._y`,
    ``getattr(x, '_y')`` and its kin, and, from outside densenet, ``from m import _y`` and
    imports of private modules (``m._p``).

    Allowed: the object's own (`self`, `cls`, ``super()``) and densenet's own modules
    (``runtime._state`` after ``from densenet.system import runtime``)."""

    def __init__(self, source, tree, package_of_file):
        self.source, self.found = source, []
        self.modules = self._densenet_module_names(tree, package_of_file)

    def _report(self, node, text=None):
        self.found.append((node.lineno, text or ast.get_source_segment(self.source, node)))

    @staticmethod
    def _is_densenet_module(dotted):
        path = os.path.join(ROOT, *dotted.split('.'))
        return (dotted.split('.')[0] == 'densenet'
                and (os.path.isfile(path + '.py')
                     or os.path.isfile(os.path.join(path, '__init__.py'))))

    def _densenet_module_names(self, tree, package):
        """{local name: densenet module it is bound to} from every import in the file."""
        names = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        top = alias.name.split('.')[0]
                        names[top] = top
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parent = package.split('.')[:len(package.split('.')) - node.level + 1]
                    base = '.'.join(parent + ([base] if base else []))
                for alias in node.names:
                    full = f'{base}.{alias.name}'
                    if self._is_densenet_module(full):
                        names[alias.asname or alias.name] = full
        return {k: v for k, v in names.items() if self._is_densenet_module(v)}

    def _dotted(self, node):
        """'a.b.c' for a chain of names, or None."""
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            head = self._dotted(node.value)
            return None if head is None else f'{head}.{node.attr}'
        return None

    def _allowed(self, obj, attr):
        if isinstance(obj, ast.Name) and obj.id in ('self', 'cls'):
            return True
        if (isinstance(obj, ast.Call) and isinstance(obj.func, ast.Name)
                and obj.func.id == 'super'):
            return True
        dotted = self._dotted(obj)
        if (dotted, attr) in PUBLIC_BY_DOCUMENTATION or (None, attr) in PUBLIC_BY_DOCUMENTATION:
            return True
        if dotted is not None:
            root, _, rest = dotted.partition('.')
            if root in self.modules:
                full = self.modules[root] + ('.' + rest if rest else '')
                return self._is_densenet_module(full)
        return False

    def visit_Attribute(self, node):
        if _is_private(node.attr) and not self._allowed(node.value, node.attr):
            self._report(node)
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        if (isinstance(func, ast.Name) and func.id in ('getattr', 'setattr', 'hasattr', 'delattr')
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and _is_private(node.args[1].value)
                and not self._allowed(node.args[0], node.args[1].value)):
            self._report(node)
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split('.')[0] != 'densenet' and any(
                    _is_private(p) for p in alias.name.split('.')):
                self._report(node, f'import {alias.name}')
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = node.module or ''
        if node.level == 0 and module.split('.')[0] != 'densenet':
            if any(_is_private(p) for p in module.split('.')):
                self._report(node, f'from {module} import ...')
            for alias in node.names:
                if _is_private(alias.name):
                    self._report(node, f'from {module} import {alias.name}')
        self.generic_visit(node)


def private_accesses(source, module='densenet.example'):
    """[(line, text)] of the private-attribute uses in `source`, a module named `module`."""
    tree = ast.parse(source)
    package = module if module.endswith('__init__') else module.rpartition('.')[0]
    visitor = _PrivateAccess(source, tree, package.replace('.__init__', ''))
    visitor.visit(tree)
    return visitor.found


def _package_files():
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for f in sorted(files):
            if f.endswith('.py'):
                yield os.path.join(folder, f)


def test_private_attributes_are_reached_only_through_mxcompat():
    """No module of densenet but system/mxcompat.py touches another object's private
    attribute (Gluon's `_children`, `_kwargs`, `_cached_graph`, ...): an MXNet upgrade
    then has one file to check."""
    found = []
    for path in _package_files():
        if os.path.samefile(path, MXCOMPAT):
            continue
        rel = os.path.relpath(path, ROOT)
        module = os.path.splitext(rel)[0].replace(os.sep, '.')
        with open(path) as f:
            source = f.read()
        found += [f'{rel}:{line}: {text}' for line, text in private_accesses(source, module)]
    assert not found, ('private attributes used outside densenet/system/mxcompat.py '
                       '(add a function there instead):\n' + '\n'.join(found))


@pytest.mark.parametrize('source, expected', [
    ('def f(block):\n    return list(block._children)\n', ['block._children']),
    ('def f(net):\n    return net.collect_params()._params\n', ['net.collect_params()._params']),
    ("def f(layer):\n    return getattr(layer, '_kwargs', {})\n",
     ["getattr(layer, '_kwargs', {})"]),
    ("def f(b):\n    setattr(b, '_active', False)\n", ["setattr(b, '_active', False)"]),
    ('from mxnet.gluon.block import _flatten\n', ['from mxnet.gluon.block import _flatten']),
    ('def f():\n    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph\n',
     ['from mxnet.onnx.mx2onnx._export_onnx import ...']),
    ('import mxnet.ndarray._internal as internal\n', ['import mxnet.ndarray._internal']),
    ('import mxnet as mx\nmx.base._LIB\n', ['mx.base._LIB']),
    ('import densenet\ndensenet.core.DenseNet._private\n', ['densenet.core.DenseNet._private']),
])
def test_private_access_check_finds(source, expected):
    assert [text for _, text in private_accesses(source)] == expected


@pytest.mark.parametrize('source', [
    'class A:\n    def f(self):\n        return self._x\n',
    'class A:\n    @classmethod\n    def f(cls):\n        return cls._x\n',
    'class A(B):\n    def f(self):\n        return super()._x()\n',
    'from densenet.system import runtime\nruntime._state\n',
    'import densenet.system.runtime as rt\nrt._state\n',
    'import densenet\ndensenet.system.runtime._state\n',
    'from . import runtime\nruntime._state\n',
    'import os\nos._exit(1)\n',
    'def f(cfg):\n    return cfg._replace(x=1)\n',
    'def f(x):\n    return x.__dict__, x.__class__\n',
    'from densenet.system.runtime import _state\n',
    'from __future__ import annotations\n',
])
def test_private_access_check_allows(source):
    assert private_accesses(source, 'densenet.system.launch') == []


def _modules():
    """{module name: parsed tree} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith('.py'):
                path = os.path.join(folder, f)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
                with open(path) as fh:
                    found[name] = ast.parse(fh.read())
    return found


def _imported(node, module, is_package):
    """The module names an import statement names (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ''
    if node.level:
        anchor = module.split('.')[:len(module.split('.')) - node.level + is_package]
        base = '.'.join(anchor + ([base] if base else []))
    return [base] + [f'{base}.{a.name}' for a in node.names]


def _function_imports(tree):
    """(line, module) of every import of densenet inside a function body."""
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [n.name for n in node.names] if isinstance(node, ast.Import) else [
                        node.module or '.']
                    found += [(node.lineno, n) for n in names
                              if n.split('.')[0] == 'densenet' or n.startswith('.')]
    return found


def test_no_function_level_import_of_a_densenet_module():
    """Every densenet module a module needs is imported at its top, where its layer shows."""
    found = {name: _function_imports(tree) for name, tree in _modules().items()}
    assert {k: v for k, v in found.items() if v} == {}


def test_function_import_check_finds():
    tree = ast.parse('def f():\n    from densenet.models import registry\n    import os\n')
    assert _function_imports(tree) == [(2, 'densenet.models')]


def _import_graph():
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, tree in modules.items():
        is_package = os.path.isfile(os.path.join(ROOT, *name.split('.'), '__init__.py'))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= {m for m in _imported(node, name, is_package)
                                if m in modules and m != name}
    return graph


def _cycles(graph):
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycle_even_for_type_checking():
    """No two modules import each other, through any chain, counting the imports made
    only for type checking: each layer's types live below their users."""
    assert _cycles(_import_graph()) == []


def test_cycle_check_finds():
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert _cycles({'a': {'b'}, 'b': set()}) == []


def test_the_core_imports_only_the_book_s_libraries():
    """densenet.core, the chapter's code, imports mxnet, d2l, numpy, the standard
    library and itself, nothing else of densenet."""
    allowed = {'mxnet', 'd2l', 'numpy', '__future__'} | set(sys.stdlib_module_names)
    found = set()
    for name, tree in _modules().items():
        if name.startswith('densenet.core'):
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found |= {m for m in _imported(node, name, False)[:1]
                              if m.split('.')[0] not in allowed
                              and not m.startswith('densenet.core')}
    assert found == set()
