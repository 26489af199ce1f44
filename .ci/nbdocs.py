"""Notebook -> Markdown for the docs site and the README, without Quarto.

Shared by `.ci/build_docs.py` (the site) and `.ci/readme.py` (README.md from nbs/index.ipynb).
The notebook processing is nbdev's own (`nbdev.processors.FilterDefaults`: show_doc rendering,
directive handling, exec of show_doc cells); this module adds what Quarto would otherwise do: turn
cells plus their STORED outputs into pandoc Markdown. Notebooks are never executed here (nbdev's
convention: they are committed with the outputs of a real run, made by `.ci/execute_notebooks.sh`;
`nbdev_test` tests them separately). A notebook without outputs renders as code only, with a note.
"""
import base64, copy, os, re, time, warnings
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from nbdev.process import extract_directives

WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'


def directives(cell):
    "The `#|` directives of a code cell, as nbdev parses them (source left untouched)."
    if cell.get('cell_type') != 'code': return {}
    return extract_directives(copy.deepcopy(cell), remove=False) or {}


def has_outputs(nb):
    "Does any code cell of `nb` already carry outputs (then we show them as stored)?"
    return any(c.get('outputs') for c in nb.cells if c.cell_type == 'code')


def _text(x): return ''.join(x) if isinstance(x, list) else (x or '')


def _fence(text, lang=''):
    "A fenced code block long enough not to be closed by backticks inside `text`."
    ticks = max([3] + [len(m) + 1 for m in re.findall(r'`{3,}', text)])
    return f"{'`' * ticks}{lang}\n{text.rstrip()}\n{'`' * ticks}"


_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def output_to_markdown(out, image_writer=None, text_only=False, asis=False):
    "Markdown for one Jupyter output; images go through `image_writer(bytes, ext) -> relative path`."
    kind = out.get('output_type')
    if kind == 'stream':
        txt = _ANSI.sub('', _text(out.get('text')))
        return _fence(txt) if txt.strip() else ''
    if kind == 'error':
        return _fence(_ANSI.sub('', '\n'.join(out.get('traceback', []))))
    data = out.get('data', {})
    if WIDGET_MIME in data and not text_only:
        return '::: {.widget-note}\n*Interactive widget: run this notebook in Jupyter to use it.*\n:::'
    if not text_only:
        for mime, ext in (('image/png', 'png'), ('image/jpeg', 'jpg')):
            if mime in data and image_writer:
                return f'![]({image_writer(base64.b64decode(_text(data[mime])), ext)})'
        if 'image/svg+xml' in data and image_writer:
            return f"![]({image_writer(_text(data['image/svg+xml']).encode(), 'svg')})"
        if 'text/markdown' in data: return _text(data['text/markdown'])
        if 'text/html' in data: return f"```{{=html}}\n{_text(data['text/html'])}\n```"
        if 'text/latex' in data: return _text(data['text/latex'])
    if 'text/plain' in data:
        txt = _text(data['text/plain'])
        return txt if asis else _fence(txt)
    return ''


def code_source(cell):
    "The cell's code with its `#|` directive lines dropped."
    return '\n'.join(l for l in _text(cell.source).splitlines() if not re.match(r'^\s*#\s*\|', l)).strip('\n')


def _truthy(d, key, default='true'): return d.get(key, [default])[0].lower() not in ('false', '0', 'no')


def cell_to_markdown(cell, image_writer=None, text_only=False, hide_dirs=('hide',)):
    "Markdown for one notebook cell: Markdown as is; code as a python fence plus its outputs (Quarto directive semantics)."
    if cell.cell_type == 'markdown': return _text(cell.source).strip('\n')
    if cell.cell_type != 'code': return ''
    d = directives(cell)
    if d.keys() & set(hide_dirs) or not _truthy(d, 'include:'): return ''
    parts, src = [], code_source(cell)
    if src and _truthy(d, 'echo:'): parts.append(_fence(src, 'python'))
    asis = d.get('output:', [''])[0].lower() == 'asis'
    if _truthy(d, 'output:'):
        outs = [output_to_markdown(o, image_writer, text_only, asis) for o in cell.get('outputs', [])]
        if not text_only and not asis: outs = [f'::: {{.cell-output}}\n{o}\n:::' if o.strip() else o for o in outs]
        parts += outs
    return '\n\n'.join(p for p in parts if p.strip())


def title_cell_leftover(nb):
    """Text of the first `# Title` Markdown cell beyond the title, `> description` and `- key: value` lines.

    nbdev's `FrontmatterProc` turns that cell into the page's frontmatter and drops the whole cell,
    so anything else written there silently disappears from the docs."""
    for c in nb.cells:
        if c.cell_type != 'markdown': continue
        s = _text(c.source)
        if not re.search(r'^#\s+\S', s, re.M): continue
        rest = [l for l in s.splitlines() if l.strip() and not re.match(r'^(#\s+\S|>\s+\S|-\s+\S.*:)', l)]
        return '\n'.join(rest)
    return ''


def nb_to_markdown(nb, image_writer=None, text_only=False):
    "The whole notebook as Markdown (raw frontmatter cells skipped)."
    return '\n\n'.join(m for m in (cell_to_markdown(c, image_writer, text_only) for c in nb.cells) if m.strip()) + '\n'


def page_name(nb_path, nbs_path):
    "Quarto's output name: numeric prefix dropped, `.html` suffix, sub-folders kept."
    rel = Path(nb_path).relative_to(nbs_path)
    return str(rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*[_-]', '', rel.stem) + '.html'))


# `Smooth`'s methods append an "Arguments:" block of their docments to `__doc__` for `help()`; in an API
# entry the signature already shows those comments, so the block is dropped from show_doc's Markdown.
_ARG_BLOCK = re.compile(r'\n*^Arguments:[ \t]*\n(?:^[ \t]+\S.*(?:\n|$))+', re.M)


def strip_arg_block(md):
    "show_doc Markdown without a trailing `Arguments:` block of indented `name: comment` lines."
    return _ARG_BLOCK.sub('\n', md).rstrip('\n') + ('\n' if md.endswith('\n') else '')


def strip_show_doc_arg_blocks(nb):
    "Apply `strip_arg_block` to the Markdown outputs of the notebook's show_doc cells."
    for c in nb.cells:
        if c.cell_type != 'code' or 'show_doc' not in _text(c.source): continue
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if 'text/markdown' in data: data['text/markdown'] = strip_arg_block(_text(data['text/markdown']))
    return nb


NO_OUTPUTS_NOTE = ('::: {.no-outputs-note}\nThis page shows the code without its results: the notebook was '
                   'committed without outputs. Run `.ci/execute_notebooks.sh` to store them.\n:::')


def mixed_import_cells(nb):
    "`cell N (first line)` of each code cell with imports next to other statements (nbdev's docs step executes it all)."
    import ast
    out = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != 'code' or directives(c).keys() & {'export', 'exports', 'exporti', 'exec_doc'}: continue
        try: body = ast.parse(code_source(c)).body
        except SyntaxError: continue
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body) and not all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body):
            out.append(f"cell {i} ({(code_source(c).splitlines() or [''])[0][:50]!r})")
    return out


def process_notebook(nb_path, out_dir):
    "Worker: nbdev-process one notebook (stored outputs, never executed), write its Markdown; returns a summary dict."
    from nbdev.config import get_config
    from nbdev.processors import FilterDefaults
    t0, nb_path, out_dir = time.time(), Path(nb_path), Path(out_dir)
    cfg = get_config()
    page = page_name(nb_path, cfg.nbs_path)
    res = dict(notebook=str(nb_path.relative_to(cfg.config_path)), page=page, error=None)
    try:
        nb = read_nb(nb_path)
        lost = title_cell_leftover(nb)
        if lost: raise ValueError('the title cell holds more than `# Title` and `> description`; nbdev drops the '
                                  f'whole cell from the docs, so move this text to its own cell:\n{lost[:300]}')
        res['outputs'] = stored = has_outputs(nb) or not any(c.cell_type == 'code' for c in nb.cells)
        cwd = os.getcwd()
        try:
            os.chdir(nb_path.parent)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                FilterDefaults()(nb)
        finally: os.chdir(cwd)
        strip_show_doc_arg_blocks(nb)
        res['warnings'] = [str(w.message).split('\n')[0] for w in caught]
        fm = getattr(nb, 'frontmatter_', {}) or {}
        files = Path(page).with_suffix('').name + '_files'
        (out_dir/page).parent.mkdir(parents=True, exist_ok=True)
        counter = iter(range(1, 10**6))
        def write_image(data, ext):
            p = (out_dir/page).parent/files/f'figure-{next(counter)}.{ext}'
            p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(data)
            return f'{files}/{p.name}'
        md = nb_to_markdown(nb, write_image)
        if not stored: md = NO_OUTPUTS_NOTE + '\n\n' + md
        (out_dir/page).with_suffix('.md').write_text(md)
        res.update(title=fm.get('title') or Path(page).stem, description=fm.get('description', ''))
    except Exception as e:
        import traceback
        try: hint = mixed_import_cells(read_nb(nb_path))     # cell numbers as in the notebook itself
        except Exception: hint = []
        msg = f'{type(e).__name__}: {e}' if isinstance(e, (RuntimeError, ValueError)) else ''.join(traceback.format_exception(e))
        res['error'] = (f'nbdev executes every cell that contains an import when it renders the docs: move the imports '
                        f'of these cells to cells of their own: {", ".join(hint)}\n' if hint else '') + msg
    res['seconds'] = round(time.time() - t0, 1)
    return res
