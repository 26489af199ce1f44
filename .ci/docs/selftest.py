"""Self-test of the docs checks: each must catch the fault it exists for, so a green docs step means something.

    .venv/bin/python .ci/docs/selftest.py [--browser]

Builds a three-page site in a temporary folder with the real template and pandoc: one good page, one with
a broken link, a missing anchor, a missing image and raw LaTeX, and asserts that `check_site` and (with
--browser) `browser_check` report exactly those faults, and nothing on the good page.  Also checks the
Markdown conversion of cells and directives that the site and the README rely on.
"""
import json, subprocess, sys, tempfile
from pathlib import Path

CI = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CI))
from nbdocs import cell_to_markdown, nb_to_markdown, title_cell_leftover
from execnb.nbio import dict2nb, mk_cell
from build_docs import check_site


def pandoc(md, html, title, tex=True, highlight=True):
    fmt = 'markdown' if tex else 'markdown-tex_math_dollars-tex_math_single_backslash'
    subprocess.run(['pandoc', '-f', fmt, '-s', '--mathml', '--template', str(CI/'docs'/'template.html'),
                    '-M', f'title={title}', '-V', 'root=', str(md), '-o', str(html)]
                   + ([] if highlight else ['--no-highlight']), check=True)


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
        for f in ('site.css',): (site/f).write_text((CI/'docs'/f).read_text())
        (site/'styles.css').write_text('')
        (site/'index.md').write_text('# Home\n\nMath $x^2$ and a [link](bad.html#y).\n')
        (site/'bad.md').write_text('## y\n\nRaw $y$ here ![](nope.png) [gone](gone.html) [anchor](index.html#nowhere)\n')
        (site/'math.md').write_text('Rendered $\\sigma$.\n\n```python\nimport torch\nx = 1\n```\n')
        long = 'y = ' + '1234567890' * 30
        (site/'code.md').write_text(f'```python\nimport torch\n```\n\n<pre style="white-space: pre">{long}</pre>\n')
        pandoc(site/'index.md', site/'index.html', 'Home')
        pandoc(site/'bad.md', site/'bad.html', 'Bad', tex=False)
        pandoc(site/'math.md', site/'math.html', 'Math')
        pandoc(site/'code.md', site/'code.html', 'Code', highlight=False)
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


if __name__ == '__main__':
    test_markdown()
    test_site('--browser' in sys.argv)
    print('docs self-test passed')
