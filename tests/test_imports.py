"""The module graph of `randsmooth`, built from the source: module-level and function-level imports.

The layering the library keeps (issue 21; "How the library fits together" in nbs/index.ipynb):
no import cycles; nothing imports the commands module `randsmooth.cli`; imports of randsmooth
modules inside functions only in the commands module (which defers torch so that `--help` is
instant); any other import inside a function defers a heavy or optional dependency and says which
in a comment.
"""
import ast, re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'randsmooth'
ROOF = 'cli'
INDEX = Path(__file__).resolve().parents[1] / 'nbs' / 'index.ipynb'


def modules(package=PACKAGE) -> dict:
    "Module name -> its parsed source, for every module nbdev exported"
    return {p.stem: p.read_text() for p in sorted(package.glob('*.py'))
            if p.stem not in ('__init__', '_modidx')}


def _targets(node, known) -> list:
    "The randsmooth modules an import statement names"
    if isinstance(node, ast.Import):
        names = [a.name.split('.') for a in node.names]
        return [n[1] for n in names if n[0] == 'randsmooth' and len(n) > 1 and n[1] in known]
    if node.level:                                   # from .x import y / from . import x
        if node.module: return [node.module.split('.')[0]]
        return [a.name for a in node.names if a.name in known]
    parts = (node.module or '').split('.')
    if parts[0] != 'randsmooth': return []
    if len(parts) > 1: return [parts[1]]
    return [a.name for a in node.names if a.name in known]   # from randsmooth import x


def imports(sources:dict) -> list:
    "(importer, imported, inside a function?, line number, the line) for every import"
    found = []
    for name, text in sources.items():
        lines = text.splitlines()
        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                          ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    targets = _targets(child, sources) or [None]      # None: not randsmooth
                    for t in targets:
                        found.append((name, t, in_function, child.lineno, lines[child.lineno - 1]))
                visit(child, inner)
        visit(ast.parse(text), False)
    return found


def cycles(edges:set) -> list:
    "The strongly connected components of more than one module (Tarjan), or self-imports"
    graph = {}
    for a, b in edges: graph.setdefault(a, set()).add(b); graph.setdefault(b, set())
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def connect(v):
        index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in index: connect(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop(); on.discard(w); group.append(w)
                if w == v: break
            if len(group) > 1 or v in graph[v]: out.append(sorted(group))
    for v in sorted(graph):
        if v not in index: connect(v)
    return out


@pytest.fixture(scope='module')
def found(): return imports(modules())


def test_the_graph_is_read_from_the_source(found):
    "The parser sees module-level and function-level imports, absolute and relative"
    src = {'a': 'from .b import x\nimport randsmooth.c\ndef f():\n    from randsmooth import d\n',
           'b': 'import os\n', 'c': '', 'd': 'from randsmooth.a import y\n'}
    got = {(a, b, inner) for a, b, inner, _, _ in imports(src)}
    assert got == {('a', 'b', False), ('a', 'c', False), ('a', 'd', True), ('b', None, False),
                   ('d', 'a', False)}
    assert cycles({('a', 'd'), ('d', 'a'), ('a', 'b')}) == [['a', 'd']]
    assert cycles({('a', 'b'), ('b', 'c')}) == []
    assert len({a for a, *_ in found}) >= 15          # the real package was read


def test_no_import_cycles(found):
    edges = {(a, b) for a, b, *_ in found if b is not None and a != b}
    assert cycles(edges) == [], "import cycles among randsmooth modules"


def test_nothing_imports_the_commands(found):
    importers = sorted({f"{a}:{line}" for a, b, _, line, _ in found if b == ROOF and a != ROOF})
    assert importers == [], f"randsmooth.{ROOF} is the roof; imported by {importers}"


def test_function_level_imports_of_the_package_only_in_the_commands(found):
    inner = sorted(f"{a}:{line}: {text.strip()}" for a, b, is_inner, line, text in found
                   if is_inner and b is not None and a != ROOF)
    assert inner == [], "import these at the top of the module:\n" + '\n'.join(inner)


def test_deferred_dependencies_say_why(found):
    "Every other import inside a function defers a heavy or optional dependency, with a comment"
    sources = modules()
    bare = []
    for a, b, is_inner, line, text in found:
        if not is_inner or b is not None or a == ROOF: continue
        above = sources[a].splitlines()[line - 2] if line > 1 else ''
        if '#' not in text and not above.strip().startswith('#'):
            bare.append(f"{a}:{line}: {text.strip()}")
    assert bare == [], "say which dependency the import defers, in a comment:\n" + '\n'.join(bare)


def layers(index=INDEX) -> dict:
    "Module -> its row in the index's layer table ('How the library fits together'), 0 at the top"
    import json
    cells = json.loads(Path(index).read_text())['cells']
    text = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
    section = text[text.index('## How the library fits together'):]
    rows = [line.split('|')[2] for line in section.splitlines()
            if line.startswith('|') and not line.startswith(('| layer', '|---'))]
    return {m: i for i, row in enumerate(rows) for m in re.findall(r'`(\w+)`', row)}


def test_the_index_table_holds_every_module_once():
    row = layers()
    assert sorted(row) == sorted(modules()), "the index's layer table and the package differ"


def test_imports_go_down_the_index_table(found):
    "What the index says about the layers is what the code does"
    row = layers()
    upward = sorted({f"{a} (row {row[a]}) imports {b} (row {row[b]})"
                     for a, b, *_ in found if b is not None and row[b] < row[a]})
    assert upward == [], "imports going up the index's table:\n" + '\n'.join(upward)
