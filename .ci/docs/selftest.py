"""Self-test of the docs checks: each must catch the fault it exists for, so a green docs step means something.

    .venv/bin/python .ci/docs/selftest.py [--browser]

Builds a small site in a temporary folder with the real template and pandoc: good pages, one with a
broken link, a missing anchor, a missing image and raw LaTeX, one typeset the old way (pandoc's MathML:
the underline of p_A drawn under the subscript only, no KaTeX), one with a KaTeX error, one wider than a
390-px phone, and asserts that `check_site` and (with --browser) `browser_check` report exactly those
faults, and nothing on the good pages.  Also checks the Markdown conversion of cells and directives
that the site and the README rely on, the show_doc "Arguments:" stripping, and `check_outputs` on
notebooks with an error, a warning, a test-size marker and a missing figure.
"""
import json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

CI = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CI))
from nbdocs import cell_to_markdown, nb_to_markdown, strip_arg_block, title_cell_leftover
from execnb.nbio import dict2nb, mk_cell, new_nb, write_nb
from build_docs import check_site
from check_outputs import check_notebook


def pandoc(md, html, title, tex=True, highlight=True, math='--katex', furniture=True, pagetitle=None):
    "A page made with the real template; `furniture`: repository/issue links, og: tags, previous/next, a sidebar."
    fmt = 'markdown' if tex else 'markdown-tex_math_dollars-tex_math_single_backslash'
    extra = []
    if furniture:
        head, nav = Path(md).with_suffix('.head'), Path(md).with_suffix('.nav')
        head.write_text('<meta property="og:title" content="t">')
        nav.write_text('<ul>' + ''.join(f'<li><a href="index.html">page {i}</a></li>' for i in range(18)) + '</ul>')
        extra = ['-V', 'repo-url=https://example.org/r', '-V', 'issues-url=https://example.org/r/issues', '-V', 'page-nav=1',
                 '-V', 'next-href=index.html', '-V', 'next-title=Home', '--include-in-header', str(head),
                 '--include-before-body', str(nav)]
    subprocess.run(['pandoc', '-f', fmt, '-s', math, '--template', str(CI/'docs'/'template.html'),
                    '-M', f'title={title}', '-M', f'pagetitle={pagetitle or title}', '-V', 'root=', str(md), '-o', str(html)]
                   + extra + ([] if highlight else ['--no-highlight']), check=True)


def test_private_links():
    from build_docs import localise_links
    from nbdev.config import get_config
    cfg = get_config(); base = cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/') + '/'
    md = f'[`_sample_counts`]({base}smooth.html#_sample_counts), [`Smooth`]({base}smooth.html#smooth)'
    assert localise_links(md, 'certify.html', cfg) == '`_sample_counts`, [`Smooth`](smooth.html#smooth)'


def test_arg_block():
    md = '### Smooth.predict\n\n```python\ndef predict(x)\n```\n\n*PREDICT.*\n\nArguments:\n    x: one example\n    returns: a class\n'
    assert strip_arg_block(md) == '### Smooth.predict\n\n```python\ndef predict(x)\n```\n\n*PREDICT.*\n', strip_arg_block(md)
    assert strip_arg_block('*Doc.*\n\nArguments:\n    x: one\n\nMore.\n') == '*Doc.*\n\nMore.\n'


def test_outputs():
    "check_outputs catches an error, a warning, a test-size marker, a missing figure, a notebook never run."
    cfg_skip = {'slow', 'notest', 'cuda'}
    with tempfile.TemporaryDirectory() as d:
        cells = [mk_cell('# T', 'markdown'), mk_cell('1/0'), mk_cell('import warnings; warnings.warn("x")'),
                 mk_cell("print('test size run')"), mk_cell('fig, ax = plt.subplots()'), mk_cell('#| slow\nplt.plot([1])'),
                 mk_cell('def f():\n    fig, ax = plt.subplots()'), mk_cell('print(1)')]
        outs = [[], [{'output_type': 'error', 'ename': 'ZeroDivisionError', 'evalue': 'division by zero', 'traceback': []}],
                [{'output_type': 'stream', 'name': 'stderr', 'text': ['/x.py:1: UserWarning: x\n']}],
                [{'output_type': 'stream', 'name': 'stdout', 'text': ['test size run\n']}], [], [], [],
                [{'output_type': 'stream', 'name': 'stdout', 'text': ['1\n']}]]
        for c, o in zip(cells, outs): c['outputs'] = o
        nb = new_nb(cells); nb.metadata['randsmooth_run'] = {'in_test': False}
        write_nb(nb, Path(d)/'a.ipynb')
        probs = check_notebook(Path(d)/'a.ipynb', cfg_skip)
        assert len(probs) == 4, probs
        for cell, what in ((1, 'error ZeroDivisionError'), (2, 'warning in the output'), (3, "test-size marker 'test size'"),
                           (4, 'makes a figure but has no image output')):
            assert any(f'a.ipynb cell {cell} ' in p and what in p for p in probs), (cell, probs)
        for c in cells: c['outputs'] = []
        write_nb(new_nb(cells), Path(d)/'b.ipynb')
        assert 'no stored outputs' in check_notebook(Path(d)/'b.ipynb', cfg_skip)[0]
        cells[-1]['outputs'] = outs[-1]
        write_nb(new_nb(cells), Path(d)/'c.ipynb')     # run, but not by execute_notebooks (or with IN_TEST)
        assert any('no metadata.randsmooth_run' in p for p in check_notebook(Path(d)/'c.ipynb', cfg_skip))


def test_markdown():
    code = mk_cell('#| echo: false\nprint(1)', 'code')
    code['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': ['1\n']}]
    md = cell_to_markdown(code)
    assert 'print(1)' not in md and '```\n1\n```' in md, md
    hidden = mk_cell('#| hide\nsecret = 1', 'code')
    assert cell_to_markdown(hidden) == ''
    shown = mk_cell('#| eval: false\nx = 2', 'code')
    assert cell_to_markdown(shown, text_only=True) == '```python\nx = 2\n```'
    asis = mk_cell('#| output: asis\nshow_doc(f)', 'code')
    asis['outputs'] = [{'output_type': 'display_data', 'metadata': {}, 'data': {'text/markdown': ['### f'], 'text/plain': ['<md>']}}]
    assert cell_to_markdown(asis).endswith('### f')
    nb = dict2nb({'cells': [mk_cell('# T\n\n> d', 'markdown'), mk_cell('# T\n\n> d\n\nlost text', 'markdown')], 'metadata': {}})
    assert title_cell_leftover(nb) == ''
    nb.cells = nb.cells[1:]
    assert title_cell_leftover(nb) == 'lost text'
    assert nb_to_markdown(nb).startswith('# T')


def test_site(browser):
    with tempfile.TemporaryDirectory() as d:
        site = Path(d)
        for f in ('site.css', 'favicon.svg'): (site/f).write_text((CI/'docs'/f).read_text())
        (site/'styles.css').write_text('')
        katex = Path(os.environ.get('KATEX_DIST', ''))
        if not (katex/'katex.min.js').is_file(): raise SystemExit('set KATEX_DIST to katex/dist (bash .ci/build_docs.sh does)')
        (site/'katex').mkdir()
        for f in ('katex.min.js', 'katex.min.css'): shutil.copy(katex/f, site/'katex'/f)
        shutil.copytree(katex/'fonts', site/'katex'/'fonts')
        paper = 'The bound $\\underline{p_A}$ on $p_A$, and $\\overline{p_B} = \\mathrm{Beta}^{-1}(1-\\alpha; n_B + 1, n - n_B)$.\n'
        (site/'paper.md').write_text(f'# Paper\n\n{paper}')
        (site/'oldmath.md').write_text(f'# Old\n\n{paper}')
        (site/'texerror.md').write_text('# Err\n\nBroken $\\nosuchmacro{x}$ here.\n')
        (site/'wide.md').write_text('# Wide\n\n<div style="width: 700px">a block wider than a phone</div>\n')
        (site/'index.md').write_text('# Home\n\nMath $x^2$ and a [link](bad.html#y).\n')
        (site/'bad.md').write_text('## y\n\nRaw $y$ here ![](nope.png) [gone](gone.html) [anchor](index.html#nowhere)\n')
        (site/'math.md').write_text('Rendered $\\sigma$.\n\n```python\nimport torch\nx = 1\n```\n')
        long = 'y = ' + '1234567890' * 30
        (site/'code.md').write_text(f'```python\nimport torch\n```\n\n<pre style="white-space: pre">{long}</pre>\n')
        pandoc(site/'index.md', site/'index.html', 'Home')
        pandoc(site/'bad.md', site/'bad.html', 'Bad', tex=False)
        pandoc(site/'math.md', site/'math.html', 'Math')
        pandoc(site/'code.md', site/'code.html', 'Code', highlight=False)
        pandoc(site/'paper.md', site/'paper.html', 'Paper')
        pandoc(site/'oldmath.md', site/'oldmath.html', 'Old', math='--mathml')
        pandoc(site/'texerror.md', site/'texerror.html', 'Err')
        pandoc(site/'wide.md', site/'wide.html', 'Wide')
        (site/'unfolded.md').write_text('# Unfolded\n\n<style>.sidebar > ul { display: block !important; }</style>\n\nText.\n')
        pandoc(site/'unfolded.md', site/'unfolded.html', 'Unfolded')   # the page list not folded at 390 px, as before
        (site/'bare.md').write_text('# Bare\n\nText.\n')
        pandoc(site/'bare.md', site/'bare.html', 'Bare', furniture=False, pagetitle='randsmooth – randsmooth')
        problems, n = check_site(site, ['index.html', 'bad.html', 'math.html', 'code.html', 'missing.html'])
        expected = {'missing page: missing.html', 'bad.html: broken link nope.png', 'bad.html: broken link gone.html',
                    'bad.html: missing anchor index.html#nowhere'}
        assert set(problems) == expected, problems
        if not browser: return
        r = subprocess.run([sys.executable, str(CI/'browser_check.py'), str(site), '--search', 'x'],
                           capture_output=True, text=True)
        out = r.stdout
        assert r.returncode == 1, out
        assert 'FAILED bad.html' in out and 'raw LaTeX' in out and "images not loaded: ['nope.png']" in out, out
        assert 'ok     index.html' in out and 'ok     math.html' in out, out
        assert 'FAILED code.html' in out and 'none of 1 Python code blocks highlighted' in out, out
        assert 'horizontal overflow' in out and 'y = 1234567890' in out, out
        assert 'has no search box' in out, out
        assert 'ok     paper.html' in out, out                                     # KaTeX: full-width lines
        block = lambda page: re.split(r'\n  (?=\S)', out.split(f'FAILED {page}')[1])[0]
        old = block('oldmath.html')                                                  # pandoc's MathML, as before
        assert 'KaTeX typeset none' in old and "underline of '\\\\underline{p_A}' spans" in old, old
        assert "overline of '\\\\overline{p_B}" in old, old
        assert 'FAILED texerror.html' in out and 'math rendering errors' in out, out
        wide = block('wide.html')
        assert 'at 390 px: the title starts' in block('unfolded.html'), block('unfolded.html')
        bare = block('bare.html')    # the old template's faults: no links out, no favicon/og:/prev-next, "x – x"
        for fault in ('title repeats itself', 'no link to the issue tracker', 'no link to the repository',
                      'no og: tags', 'no previous/next links'):
            assert fault in bare, (fault, bare)
        assert 'at 390 px: page scrolls sideways' in wide and 'sticking out' in wide and '1280' not in wide, wide


if __name__ == '__main__':
    test_markdown()
    test_arg_block()
    test_private_links()
    test_outputs()
    test_site('--browser' in sys.argv)
    print('docs self-test passed')
