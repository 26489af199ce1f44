"""Build the documentation site without Quarto: nbdev's notebook processing, then pandoc.

    .venv/bin/python .ci/build_docs.py [--out _site] [--jobs 2] [--only NAME] [--katex DIR]

1. Every notebook under nbs/ (nbdev's `nbglob`, so `_`-prefixed files are skipped) is processed by
   nbdev's own `FilterDefaults` processors (show_doc rendering, directives, exec of show_doc cells)
   -- the same processing `nbdev_docs` does before `quarto render`. Notebooks are NOT executed: the
   site shows the outputs stored in them by a real run (`.ci/execute_notebooks.sh`), as nbdev's
   convention has it; a notebook without outputs renders as code only, with a note saying so.
2. Each processed notebook becomes Markdown (`nbdocs.nb_to_markdown`: images written beside it),
   and pandoc renders it to standalone HTML: math left as TeX for KaTeX (shipped in `katex/`, from
   the npm package; typeset in the browser, nothing fetched at view time), highlighted code, a
   sidebar of all pages, previous/next links, links to the repository and its issues, og: tags
   from nbs/_quarto.yml + nbs/nbdev.yml. Page names follow Quarto's: `00_theory.ipynb` -> `theory.html`.
3. `commands.html` lists the `--help` of every console script in settings.ini.
4. Pagefind (the `pagefind` Python package, offline) indexes the pages for the search box.
5. The site is checked: one page per notebook, every internal link and `#anchor` resolves.
Exits non-zero on any notebook whose processing errors, a missing page or a broken link.
"""
import argparse, html, json, multiprocessing, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from nbdocs import page_name, process_notebook


def _doc_link(mod, name):
    "The docs page#anchor of `mod.name` from nbdev's index (`_modidx.py`), or None."
    import importlib
    try: idx = importlib.import_module(f"{mod.split('.')[0]}._modidx").d
    except ImportError: return None
    link = idx.get('syms', {}).get(mod, {}).get(f'{mod}.{name}')
    return link[0] if link else None


def _help_text(name):
    "`name --help` of a console script next to this Python; raises if it fails."
    r = subprocess.run([str(Path(sys.executable).parent/name), '--help'], capture_output=True, text=True, timeout=180,
                       env={**os.environ, 'COLUMNS': '88'})     # argparse wraps to this width
    if r.returncode != 0: raise RuntimeError(f'`{name} --help` exited {r.returncode}:\n{r.stderr[-2000:]}')
    return r.stdout.rstrip()


def cli_markdown(cfg):
    "A page with the `--help` of every console script in settings.ini (run two at a time); raises if one fails."
    from concurrent.futures import ThreadPoolExecutor
    entries = [e.split('=') for e in cfg.get('console_scripts', '').split()]
    with ThreadPoolExecutor(2) as ex: helps = list(ex.map(_help_text, [name for name, _ in entries]))
    parts = ['The command-line tools installed with the package. Each is also documented, with examples, '
             'in the notebook of its module.']
    for (name, target), text in zip(entries, helps):
        doc = _doc_link(*target.split(':'))
        where = f'[`{target}`]({doc})' if doc else f'`{target}`'
        parts.append(f'## {name}\n\n{where}\n\n```\n{text}\n```')
    return '\n\n'.join(parts) + '\n'


def sidebar_html(pages, current):
    "The site navigation: every page, the current one marked."
    items = []
    for p in pages:
        href = os.path.relpath(p['page'], os.path.dirname(current) or '.')
        cls = ' class="active"' if p['page'] == current else ''
        items.append(f'<li><a href="{html.escape(href)}"{cls}>{html.escape(p["title"])}</a></li>')
    return '<ul>\n' + '\n'.join(items) + '\n</ul>'


def localise_links(md, page, cfg):
    "nbdev's `add_links` writes absolute doc-site URLs; make those relative so the local site is self-contained."
    base = (cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/')).rstrip('/') + '/'
    up = os.path.relpath('.', os.path.dirname(page) or '.')
    prefix = '' if up == '.' else up + '/'
    md = md.replace(base, prefix)
    # nbdev links every name of its index, private ones too, but API entries exist only for public names.
    md = re.sub(r'\[(`_\w[\w.]*`)\]\([^)\s]*#_[^)\s]*\)', r'\1', md)
    # Links to notebooks, as Quarto resolves them: `](00_theory.ipynb#x)` -> `](theory.html#x)`
    return re.sub(r'\]\((?:nbs/)?(?:\d+[a-zA-Z0-9]*[_-])?([\w-]+)\.ipynb(#[^)]*)?\)', lambda m: f'](' + prefix + m.group(1) + '.html' + (m.group(2) or '') + ')', md)


def tidy_signatures(md):
    "Drop the blank lines nbdev's show_doc leaves at the start and end of a signature's code block."
    return re.sub(r'```python\n\n+((?:async def|def|class) [^`]*?)\n{2,}```', r'```python\n\1\n```', md)


def plain(t):
    "Text of a title or description for attributes: TeX, backticks and emphasis marks dropped."
    return re.sub(r'[$\\`*]', '', t or '')


def site_settings(cfg):
    "What the page template needs from settings.ini, nbs/nbdev.yml and nbs/_quarto.yml (Quarto's own keys)."
    import yaml
    web = {}
    for f in ('_quarto.yml', 'nbdev.yml'):
        path = cfg.nbs_path/f
        if path.exists(): web.update((yaml.safe_load(path.read_text()) or {}).get('website') or {})
    repo = (web.get('repo-url') or cfg.get('git_url', '')).rstrip('/')
    actions = web.get('repo-actions') or []
    return dict(title=web.get('title') or cfg.get('title', cfg.lib_name), repo_url=repo,
                issues_url=f'{repo}/issues' if repo and ('issue' in actions or not actions) else '',
                site_url=(web.get('site-url') or '').rstrip('/'), description=web.get('description') or cfg.get('description', ''),
                open_graph=bool(web.get('open-graph')), twitter_card=bool(web.get('twitter-card')))


def social_tags(meta, site):
    "og: and twitter: <meta> tags of one page (Quarto's `open-graph` / `twitter-card` settings)."
    title = plain(meta['title']) if meta['page'] != 'index.html' else site['title']
    desc = plain(meta.get('description')) or site['description']
    tags = []
    if site['open_graph']:
        tags += [('property', 'og:title', title), ('property', 'og:description', desc), ('property', 'og:type', 'website'),
                 ('property', 'og:site_name', site['title'])]
        if site['site_url']: tags.append(('property', 'og:url', f"{site['site_url']}/{meta['page']}"))
    if site['twitter_card']:
        tags += [('name', 'twitter:card', 'summary'), ('name', 'twitter:title', title), ('name', 'twitter:description', desc)]
    return '\n'.join(f'<meta {a}="{html.escape(k)}" content="{html.escape(v)}">' for a, k, v in tags)


def page_title(meta, site):
    "The <title>: the site's own name on the home page, `Page – site` elsewhere (never `site – site`)."
    t = plain(meta['title'])
    return site['title'] if meta['page'] == 'index.html' or t == site['title'] else f"{t} – {site['title']}"


def render_page(md_path, html_path, meta, pages, cfg, site):
    "pandoc: Markdown -> standalone HTML5, TeX math for KaTeX, highlighted code, our template, sidebar, prev/next."
    md = tidy_signatures(localise_links(md_path.read_text(), meta['page'], cfg))
    md_path.write_text(md)
    nav = html_path.parent/'.nav.html'
    nav.write_text(sidebar_html(pages, meta['page']))
    head = html_path.parent/'.head.html'
    head.write_text(social_tags(meta, site))
    up = os.path.relpath('.', os.path.dirname(meta['page']) or '.')
    root = '' if up == '.' else up + '/'
    meta_file = html_path.parent/'.meta.json'     # JSON is YAML: pandoc parses these values as Markdown (math included)
    meta_file.write_text(json.dumps({k: meta[k] for k in ('title', 'description') if meta.get(k)}))
    i = [p['page'] for p in pages].index(meta['page'])
    rel = lambda p: os.path.relpath(p['page'], os.path.dirname(meta['page']) or '.')
    links = []
    if i > 0: links += ['-V', f'prev-href={rel(pages[i-1])}', '-V', f'prev-title={plain(pages[i-1]["title"])}']
    if i + 1 < len(pages): links += ['-V', f'next-href={rel(pages[i+1])}', '-V', f'next-title={plain(pages[i+1]["title"])}']
    if links: links += ['-V', 'page-nav=1']
    # Markdown as Jupyter reads it: a heading or block quote needs no blank line before it.
    cmd = ['pandoc', str(md_path), '-f', 'markdown-yaml_metadata_block-blank_before_header-blank_before_blockquote',
           '-t', 'html5', '--standalone', '--katex',
           '--template', str(HERE/'docs'/'template.html'), '--toc', '--toc-depth=3', '--metadata-file', str(meta_file),
           '--metadata', f'pagetitle={page_title(meta, site)}', '-V', f'meta-description={plain(meta.get("description"))}',
           '-V', f'site-title={site["title"]}', '-V', f'root={root}', '-V', 'search=1',
           '-V', f'repo-url={site["repo_url"]}', '-V', f'issues-url={site["issues_url"]}', *links,
           '--highlight-style=pygments', '--include-before-body', str(nav), '--include-in-header', str(head),
           '-o', str(html_path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    nav.unlink(); meta_file.unlink(); head.unlink()
    if r.returncode != 0: raise RuntimeError(f'pandoc failed on {md_path}:\n{r.stderr}')
    # An API entry (show_doc: a heading, then the signature) weighs in search like a page title, and
    # its dotted name is indexed word by word too (`Smooth.certify` is found by "certify").
    def api_heading(m):
        words = ' '.join(re.split(r'[._]+', html.unescape(m.group(3))))
        return f'<h{m.group(1)} {m.group(2)} data-pagefind-weight="10" data-pagefind-index-attrs="data-words" data-words="{html.escape(words)}">'
    page = html_path.read_text()
    html_path.write_text(re.sub(r'<h([34]) (id="[^"]*")>(?=([^<]*)</h\1>\s*<div class="sourceCode")', api_heading, page))
    if r.stderr.strip(): print(f'  pandoc warnings for {meta["page"]}:\n{r.stderr.strip()}')


class _Links(HTMLParser):
    "Collect ids, links and image sources of one HTML page."
    def __init__(self):
        super().__init__(); self.ids, self.links = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        for k in ('href', 'src'):
            if a.get(k) and tag in ('a', 'img', 'link', 'script'): self.links.append((tag, a[k]))


def check_site(site, expected_pages):
    "Problems in the built site: expected pages missing, internal links or anchors that do not resolve."
    site, problems, parsed = Path(site), [], {}
    for p in expected_pages:
        if not (site/p).is_file(): problems.append(f'missing page: {p}')
    def parse(path):
        if path not in parsed:
            parser = _Links(); parser.feed(path.read_text(errors='replace')); parsed[path] = parser
        return parsed[path]
    for page in sorted(site.rglob('*.html')):
        for tag, link in parse(page).links:
            u = urlsplit(link)
            if u.scheme or link.startswith('//'):
                if u.scheme in ('http', 'https', 'mailto', 'data'): continue
                problems.append(f'{page.relative_to(site)}: unexpected link scheme {link}'); continue
            target = (page.parent/unquote(u.path)).resolve() if u.path else page
            if target.is_dir(): target = target/'index.html'
            if not target.is_file() or site.resolve() not in target.parents:
                problems.append(f'{page.relative_to(site)}: broken link {link}'); continue
            if u.fragment and target.suffix == '.html' and unquote(u.fragment) not in parse(target).ids:
                problems.append(f'{page.relative_to(site)}: missing anchor {link}')
    return problems, len(list(site.rglob('*.html')))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='_site', help='output folder (relative to the repo root)')
    ap.add_argument('--jobs', type=int, default=2, help='notebooks processed in parallel')
    ap.add_argument('--only', default='', help='process only notebooks whose name contains this (for debugging; the site check then reports the rest missing)')
    ap.add_argument('--katex', default=os.environ.get('KATEX_DIST', ''),
                    help="KaTeX's dist/ folder (from `npm install katex`; .ci/build_docs.sh installs it)")
    args = ap.parse_args(argv)
    katex = Path(args.katex) if args.katex else None
    if not katex or not (katex/'katex.min.js').is_file():
        print(f'KaTeX not found in {args.katex!r}: pass --katex node_modules/katex/dist (bash .ci/build_docs.sh installs it)')
        return 1
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    cfg = get_config()
    os.chdir(cfg.config_path)
    out = Path(args.out).resolve()
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    nbs = sorted(nbglob(cfg.nbs_path, func=Path))
    todo = [p for p in nbs if args.only in p.name]
    if not nbs: print('no notebooks found'); return 1
    t0 = time.time()
    ctx = multiprocessing.get_context('spawn')
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # one thread per worker: `--jobs` processes share the cores
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx, max_tasks_per_child=1) as ex:
        results = list(ex.map(process_notebook, todo, [out] * len(todo)))
    failed = [r for r in results if r['error']]
    for r in results: print(f"  {'FAILED' if r['error'] else 'ok':6} {r['notebook']:36} -> {r['page']:24} {r['seconds']:6.1f}s")
    for r in results:
        if r.get('warnings'): print(f"  note {r['notebook']}: {len(r['warnings'])} nbdev warnings, e.g. {r['warnings'][0]!r}")
    for r in failed: print(f"\n--- docs processing failed for {r['notebook']}:\n{r['error']}")
    bare = [r['notebook'] for r in results if not r['error'] and not r.get('outputs')]
    if bare: print(f'  note: {len(bare)} notebooks have no stored outputs (shown as code only; '
                   f'run .ci/execute_notebooks.sh): {" ".join(Path(b).name for b in bare)}')
    print(f'processed {len(results)} notebooks in {time.time()-t0:.0f}s')
    pages = sorted((r for r in results if not r['error']), key=lambda r: (r['page'] != 'index.html', r['notebook']))
    problems = [f"notebook failed in docs processing: {r['notebook']}" for r in failed]
    try:
        (out/'commands.md').write_text(cli_markdown(cfg))
        pages.append(dict(page='commands.html', title='Command reference: every --help', notebook=None))
    except Exception as e: problems.append(f'cli page: {e}')
    site = site_settings(cfg)
    for meta in pages: render_page(out/Path(meta['page']).with_suffix('.md'), out/meta['page'], meta, pages, cfg, site)
    for f in (HERE/'docs'/'site.css', HERE/'docs'/'favicon.svg', cfg.nbs_path/'styles.css'):
        if f.exists(): shutil.copy(f, out/f.name)
    (out/'katex').mkdir()
    for f in ('katex.min.js', 'katex.min.css', 'LICENSE'):
        if (katex/f).exists(): shutil.copy(katex/f, out/'katex'/f)
    if not (katex/'LICENSE').exists() and (katex.parent/'LICENSE').exists(): shutil.copy(katex.parent/'LICENSE', out/'katex'/'LICENSE')
    shutil.copytree(katex/'fonts', out/'katex'/'fonts', ignore=shutil.ignore_patterns('*.ttf', '*.woff'))   # woff2: every current browser
    (out/'pages.json').write_text(json.dumps([{k: p.get(k) for k in ('page', 'title', 'notebook')} for p in pages], indent=1))
    r = subprocess.run([sys.executable, '-m', 'pagefind', '--site', str(out), '--silent',
                        '--exclude-selectors', '.math'],   # formulas' TeX source: not page text
                       capture_output=True, text=True)
    if r.returncode != 0: problems.append(f'pagefind failed ({r.returncode}): {(r.stderr or r.stdout)[-1000:]}')
    expected = [page_name(p, cfg.nbs_path) for p in nbs] + ['commands.html']
    link_problems, n_html = check_site(out, expected)
    problems += link_problems
    for p in problems: print('PROBLEM:', p)
    print(f'site: {n_html} pages in {out}/, {len(problems)} problems, {time.time()-t0:.0f}s')
    return 1 if problems else 0


if __name__ == '__main__': sys.exit(main())
