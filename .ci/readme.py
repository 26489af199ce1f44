"""Regenerate README.md from nbs/index.ipynb, or check that it matches.

    .venv/bin/python .ci/readme.py           # write README.md
    .venv/bin/python .ci/readme.py --check   # exit 1 (and show a diff) if README.md differs

Markdown cells are copied verbatim; code cells become ```python fences followed by their stored text
outputs (from the real run of `.ci/execute_notebooks.sh`, which regenerates README.md); `#|`
directive lines are dropped and `#| hide` cells are omitted.
"""
import difflib, re, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbdocs import nb_to_markdown, read_nb
from nbdev.config import get_config


def render_readme():
    cfg = get_config()
    path = cfg.nbs_path/cfg.get('readme_nb', 'index.ipynb')
    nb = read_nb(path)
    md = nb_to_markdown(nb, text_only=True)
    # links to notebooks are relative to nbs/ in the notebook (as Quarto resolves them), to the repo root here
    return re.sub(r'\]\((\d+[a-zA-Z0-9]*[_-][\w-]+\.ipynb(?:#[^)]*)?)\)', r'](nbs/\1)', md)


def main(argv):
    readme = get_config().config_path/'README.md'
    text = render_readme()
    if '--check' in argv:
        old = readme.read_text() if readme.exists() else ''
        if old == text: print('README.md matches nbs/index.ipynb'); return 0
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True), 'README.md', 'from nbs/index.ipynb'))
        print('README.md differs from nbs/index.ipynb: run `.venv/bin/python .ci/readme.py`')
        return 1
    readme.write_text(text); print(f'wrote {readme}')
    return 0


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
