"""Check the outputs stored in the notebooks (the ones the docs site shows) without running anything.

    .venv/bin/python .ci/check_outputs.py [NOTEBOOK ...]     # default: every notebook under nbs/

Per notebook, it must have been run by `.ci/execute_notebooks.sh` (stored outputs, and
`metadata.randsmooth_run` saying IN_TEST was unset); and per code cell: no error output, no warning
noise (a `...Warning:` line or `warnings.warn` text in any output), no test-size marker (`IN_TEST`,
"test size", "reduced run"), and a cell that makes a figure (`plt.subplots`, `plot_...(`, `.plot(`,
... outside a `def`) and was executed carries an image. Each problem is printed as
`nbs/NAME.ipynb cell N (first line): what` (N counts every cell, Markdown included, from 0), and the
command exits 1 if there is any.
"""
import re, sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from nbdocs import _text, code_source, directives

WARNING = re.compile(r'^.*\b\w*Warning\b:.*$|^.*warnings\.warn\(.*$', re.M)
TEST_SIZE = re.compile(r'\bIN_TEST\b|\btest[- ]size\b|\breduced run\b', re.I)
FIGURE = re.compile(r'\bplt\.(subplots|figure|plot|imshow|hist|scatter|bar|show)\(|(?<![\w.])(ax|axes|axs)\b.*\.plot\('
                    r'|\bplot_\w+\(|\bfigure\d*\(')
IMAGE = ('image/png', 'image/jpeg', 'image/svg+xml')


def makes_figure(src):
    "Does the cell's code draw a pyplot figure at top level (not only inside a `def`), and not close them all?"
    if re.search(r'\bFigure\(', src) and not re.search(r'\bplt\.', src):
        return False   # a matplotlib.figure.Figure made without pyplot is never displayed
    lines, hits = src.splitlines(), 0
    for i, line in enumerate(lines):
        if not FIGURE.search(line): continue
        indent = len(line) - len(line.lstrip())
        outer = next((l for l in reversed(lines[:i]) if l.strip() and len(l) - len(l.lstrip()) < indent), '') if indent else ''
        if not re.match(r'\s*(async\s+)?def\s', outer): hits += 1
    return hits > len(re.findall(r'\bplt\.close\(', src))


def output_text(o):
    if o.get('output_type') == 'stream': return _text(o.get('text'))
    if o.get('output_type') == 'error': return '\n'.join(o.get('traceback', []))
    return _text(o.get('data', {}).get('text/plain', ''))


def check_notebook(path, skip_flags):
    "Problems of one notebook's stored outputs, each a line naming the notebook and the cell."
    from execnb.nbio import read_nb
    nb, problems = read_nb(path), []
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == 'code']
    if not code: return []
    if not any(c.get('outputs') for _, c in code):
        return [f'{path}: no stored outputs (run: bash .ci/execute_notebooks.sh {path})']
    run = nb.metadata.get('randsmooth_run')
    if not run: problems.append(f'{path}: outputs not made by .ci/execute_notebooks.sh (no metadata.randsmooth_run)')
    elif run.get('in_test', True): problems.append(f'{path}: outputs of a test-size run (IN_TEST was set)')
    for i, c in code:
        src = code_source(c)
        where = f"{path} cell {i} ({(src.splitlines() or [''])[0][:60]!r})"
        d = directives(c)
        skipped = bool(skip_flags & d.keys()) or d.get('eval:', [''])[0].lower() == 'false'
        for o in c.get('outputs', []):
            text = output_text(o)
            if o.get('output_type') == 'error':
                problems.append(f"{where}: error {o.get('ename')}: {str(o.get('evalue'))[:200]}")
            m = WARNING.search(text)
            if m: problems.append(f'{where}: warning in the output: {m.group(0).strip()[:200]}')
            m = TEST_SIZE.search(text)
            if m: problems.append(f'{where}: test-size marker {m.group(0)!r} in the output')
        defines = bool({'export', 'exports', 'exporti'} & d.keys())   # library code: defines, draws nothing
        if not skipped and not defines and makes_figure(src) and not any(k in o.get('data', {}) for o in c.get('outputs', []) for k in IMAGE):
            problems.append(f'{where}: makes a figure but has no image output')
    return problems


def main(argv=None):
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    cfg = get_config()
    args = sys.argv[1:] if argv is None else argv
    nbs = [Path(a) for a in args] or [p.relative_to(cfg.config_path) for p in sorted(nbglob(cfg.nbs_path, func=Path))]
    skip = set(cfg.tst_flags.split())
    problems = [p for nb in nbs for p in check_notebook(nb, skip)]
    for p in problems: print('PROBLEM:', p)
    bad = {p.split(' ')[0].rstrip(':') for p in problems}
    print(f'stored outputs: {len(nbs) - len(bad)} of {len(nbs)} notebooks fine, {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__': sys.exit(main())
