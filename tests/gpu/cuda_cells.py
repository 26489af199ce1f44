"""Compile every `#| cuda` cell of the notebooks (no GPU needed): the dry run's stand-in.

    python tests/gpu/cuda_cells.py nbs

Prints a Markdown list of the cells per notebook; exits 1 naming any cell that does not compile.
IPython lines (`%magic`, `!shell`) are blanked first, as IPython would transform them.
"""
import json, re, sys
from pathlib import Path


def cuda_cells(nb_path):
    "Sources of the code cells of `nb_path` that carry the `#| cuda` directive."
    cells = json.loads(Path(nb_path).read_text())['cells']
    srcs = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
    return [s for s in srcs if re.search(r'^#\s*\|\s*cuda\b', s, re.M)]


def main(folder):
    bad, total = [], 0
    for nb in sorted(Path(folder).glob('*.ipynb')):
        cells = cuda_cells(nb)
        for i, src in enumerate(cells):
            code = re.sub(r'^\s*[%!].*$', '', src, flags=re.M)
            try: compile(code, f'{nb.name}[cuda cell {i + 1}]', 'exec')
            except SyntaxError as e: bad.append(f'{nb.name}, cuda cell {i + 1}: {e}')
        if cells: print(f'- {nb.name}: {len(cells)} `#| cuda` cell(s) compile')
        total += len(cells)
    print(f'\n{total} cuda cells compiled (not run: no GPU in a dry run).')
    for b in bad: print(f'- **does not compile**: {b}')
    return 1 if bad else 0


if __name__ == '__main__': sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else 'nbs'))
