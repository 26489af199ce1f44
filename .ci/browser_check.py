"""Open every page of the built docs site in headless Chromium and check that it rendered.

    .venv/bin/python .ci/browser_check.py [_site] [--screenshot PAGE]

Serves the site on 127.0.0.1 (a random free port), loads each page with `chromium --headless
--dump-dom` and, in the DOM the browser produced, asserts: a non-empty <title> and <h1>; no raw
LaTeX left in the visible text (`$...$`, `\\(`, `\\[`, `\\frac{` ... outside code and math); every
<img> loaded (the page template records `naturalWidth` of each image after `load` into
`data-check`); math present as MathML where the page has any.  `--screenshot PAGE` also saves
PAGE.png next to the site for a person to look at.  Exits 1 listing every failing page.
"""
import argparse, functools, http.server, json, re, shutil, subprocess, sys, tempfile, threading
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--hide-scrollbars', '--virtual-time-budget=10000']
RAW_LATEX = re.compile(r'\$[^$\s][^$]*\$|\\\(|\\\[|\\(frac|sigma|alpha|mathcal|Phi|left|right|sum|le|ge)\b')


def chromium():
    exe = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    if not exe: raise SystemExit('chromium not found: apt-get install -y chromium')
    return exe


class Rendered(HTMLParser):
    "Visible text (code, pre, math, script and style left out), title, h1 and the template's data-check."
    SKIP = {'script', 'style', 'pre', 'code', 'math', 'title'}
    def __init__(self):
        super().__init__(); self.stack, self.text, self.title, self.h1, self.check, self.n_math = [], [], '', '', None, 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'html' and a.get('data-check'): self.check = json.loads(a['data-check'])
        if tag == 'math': self.n_math += 1
        if tag not in ('img', 'br', 'hr', 'meta', 'link', 'input', 'col', 'area', 'base', 'wbr', 'source'): self.stack.append(tag)
    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag: pass
    def handle_data(self, data):
        if 'title' in self.stack: self.title += data
        if 'h1' in self.stack: self.h1 += data
        if not self.SKIP & set(self.stack): self.text.append(data)


def serve(site):
    "A quiet static server for `site` on 127.0.0.1, in a daemon thread."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def run_chromium(args, profile, timeout=60):
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f'--user-data-dir={profile}', *args],
                          capture_output=True, text=True, timeout=timeout)


def check_page(url, profile, source_has_math, source_images=0):
    "Problems with one rendered page (empty list if fine)."
    r = run_chromium(['--dump-dom', url], profile)
    if r.returncode != 0 or '<html' not in r.stdout: return [f'chromium failed ({r.returncode}): {r.stderr[-300:]}']
    p = Rendered(); p.feed(r.stdout)
    problems = []
    if not p.title.strip(): problems.append('no <title>')
    if not p.h1.strip(): problems.append('no <h1>')
    text = ' '.join(' '.join(p.text).split())
    m = RAW_LATEX.search(text)
    if m: problems.append(f'raw LaTeX in visible text: {text[max(0, m.start()-40):m.end()+40]!r}')
    if p.check is None: problems.append('page script did not run (no data-check after load)')
    elif p.check['broken']: problems.append(f"images not loaded: {p.check['broken']}")
    elif p.check['images'] < source_images: problems.append(f"{source_images} images in the source, {p.check['images']} on the page")
    if source_has_math and not p.n_math: problems.append('page has math but no rendered <math>')
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', default='_site')
    ap.add_argument('--screenshot', action='append', default=[], help='also save a PNG of this page')
    args = ap.parse_args(argv)
    site = Path(args.site).resolve()
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob('*.html'))
    if not pages: print(f'no pages in {site}'); return 1
    httpd = serve(site)
    base = f'http://127.0.0.1:{httpd.server_address[1]}/'
    failures = {}
    with tempfile.TemporaryDirectory() as profile:
        for page in pages:
            md = (site/page).with_suffix('.md')
            prose = re.sub(r'(?ms)^(`{3,}|~{3,}).*?^\1', '', md.read_text()) if md.exists() else ''
            prose = re.sub(r'`[^`]*`', '', prose)                       # math inside code is not math
            has_math = re.search(r'(?<![\\$])\$[^$\s]', prose) is not None
            probs = check_page(base + page, profile, has_math, len(re.findall(r'!\[[^\]]*\]\(', prose)))
            if probs: failures[page] = probs
            print(f"  {'FAILED' if probs else 'ok':6} {page}" + ''.join(f'\n         {x}' for x in probs))
        for page in args.screenshot:
            png = site/(Path(page).stem + '.png')
            run_chromium([f'--screenshot={png}', '--window-size=1400,1800', base + page], profile)
            print(f'  screenshot {png}')
    httpd.shutdown()
    print(f'browser check: {len(pages) - len(failures)} of {len(pages)} pages rendered')
    return 1 if failures else 0


if __name__ == '__main__': sys.exit(main())
