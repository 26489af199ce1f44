"""Open every page of the built docs site in headless Chromium and check that it rendered.

    .venv/bin/python .ci/browser_check.py [_site] [--search TERM] [--screenshot PAGE]

Serves the site on 127.0.0.1 (a random free port), loads each page with `chromium --headless
--dump-dom` in a 1280-pixel-wide window and, in the DOM the browser produced, asserts: a non-empty
<title> and <h1>; no raw LaTeX left in the visible text (`$...$`, `\\(`, `\\[`, `\\frac{` ...
outside code and math); math present as MathML where the page has any; and, from what the page
template records after `load` into `data-check`: every <img> loaded, every Python code block
highlighted (its tokens in colours of their own), a copy button on every code block, no code block
wider than its box (no horizontal overflow).  `--search TERM` also opens `index.html?q=TERM` and
asserts that the search box lists at least one result.  `--screenshot PAGE` saves PAGE.png next to
the site for a person to look at.  Exits 1 listing every failing page.
"""
import argparse, fcntl, functools, http.server, json, os, re, shutil, subprocess, sys, tempfile, threading, time
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--hide-scrollbars', '--virtual-time-budget=10000',
                  '--window-size=1280,900']
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
        self.n_results = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'pagefind-ui__result-link' in (a.get('class') or '').split(): self.n_results += 1
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
    c = p.check or {}
    if c.get('python') and not c.get('highlighted'): problems.append(f"none of {c['python']} Python code blocks highlighted")
    elif c.get('tokens', 0) > c.get('highlighted', 0):   # token spans without their colours: no highlighting CSS
        problems.append(f"{c['tokens'] - c['highlighted']} of {c['tokens']} Python code blocks not highlighted")
    if c.get('copy', 0) < c.get('pre', 0): problems.append(f"{c['pre']} code blocks, {c['copy']} copy buttons")
    if c.get('overflow'): problems.append(f"code wider than its box (horizontal overflow): {c['overflow'][:3]}")
    return problems


class DevTools:
    "Headless Chromium driven over its DevTools pipe (`--remote-debugging-pipe`: JSON messages on fds 3/4)."
    def __init__(self, profile):
        self.to_r, self.to_w = os.pipe(); self.from_r, self.from_w = os.pipe(); self.n = 0
        high = lambda fd: (fcntl.fcntl(fd, fcntl.F_DUPFD, 10), os.close(fd))[0]   # clear of fds 3 and 4
        self.to_r, self.from_w = high(self.to_r), high(self.from_w)
        flags = [f for f in CHROMIUM_FLAGS if not f.startswith('--virtual-time')]
        redirect = f'exec "$0" "$@" 3<&{self.to_r} 4>&{self.from_w} {self.to_r}<&- {self.from_w}>&-'
        self.proc = subprocess.Popen(['bash', '-c', redirect, chromium(), *flags, '--remote-debugging-pipe',
                                      f'--user-data-dir={profile}', 'about:blank'],
                                     pass_fds=(self.to_r, self.from_w), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(self.to_r); os.close(self.from_w); self.buf = b''

    def send(self, method, session=None, **params):
        "Send one command and return its result (events in between are skipped)."
        self.n += 1
        msg = dict(id=self.n, method=method, params=params, **({'sessionId': session} if session else {}))
        os.write(self.to_w, json.dumps(msg).encode() + b'\0')
        while True:
            while b'\0' not in self.buf:
                chunk = os.read(self.from_r, 1 << 16)
                if not chunk: raise RuntimeError('chromium closed the DevTools pipe')
                self.buf += chunk
            raw, self.buf = self.buf.split(b'\0', 1)
            reply = json.loads(raw)
            if reply.get('id') == self.n:
                if 'error' in reply: raise RuntimeError(f"{method}: {reply['error']}")
                return reply['result']

    def evaluate(self, url, expression, timeout=30):
        "Open `url`, wait for its `load`, then return the value of `expression` (a promise is awaited)."
        target = self.send('Target.createTarget', url=url)['targetId']
        session = self.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        ready = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
        deadline = time.time() + timeout
        while not self.send('Runtime.evaluate', session, expression=ready, returnByValue=True)['result'].get('value'):
            if time.time() > deadline: raise TimeoutError(f'{url} did not load in {timeout}s')
            time.sleep(0.1)
        r = self.send('Runtime.evaluate', session, expression=expression, awaitPromise=True, returnByValue=True)
        return r['result'].get('value')

    def close(self):
        self.proc.kill(); self.proc.wait(); os.close(self.to_w); os.close(self.from_r)


def search_results(base, profile, term, wait_s=20):
    "Number of results the search box lists for `term` (index.html?q=term), waiting up to `wait_s` seconds."
    from urllib.parse import quote
    count = f"""new Promise(done => {{ const t0 = Date.now(); if (!window.PagefindUI) return done(-1);
      (function poll() {{
        const n = document.querySelectorAll('.pagefind-ui__result-link').length;
        if (n || Date.now() - t0 > {wait_s * 1000}) done(n); else setTimeout(poll, 200); }})(); }})"""
    browser = DevTools(profile)
    try: return browser.evaluate(f'{base}index.html?q={quote(term)}', count, timeout=wait_s + 30)
    finally: browser.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', default='_site')
    ap.add_argument('--screenshot', action='append', default=[], help='also save a PNG of this page')
    ap.add_argument('--search', default=None, help='check that searching this term lists results')
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
        if args.search:
            n = search_results(base, profile, args.search)
            if n < 0: failures['search'] = ['index.html has no search box (pagefind-ui.js did not load)']
            elif not n: failures['search'] = [f'searching {args.search!r} listed no results']
            print(f"  {'ok' if n > 0 else 'FAILED':6} search {args.search!r}: {max(n, 0)} results"
                  + ''.join(f'\n         {x}' for x in failures.get('search', [])))
        for page in args.screenshot:
            png = site/(re.sub(r'[^\w-]+', '_', page.replace('.html', '')) + '.png')
            run_chromium([f'--screenshot={png}', '--window-size=1400,1800', base + page], profile)
            print(f'  screenshot {png}')
    httpd.shutdown()
    print(f'browser check: {len(pages) - len(failures)} of {len(pages)} pages rendered')
    return 1 if failures else 0


if __name__ == '__main__': sys.exit(main())
