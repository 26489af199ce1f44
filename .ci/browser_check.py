"""Open every page of the built docs site in headless Chromium and check that it rendered.

    .venv/bin/python .ci/browser_check.py [_site] [--search TERM] [--screenshot PAGE] [--width PX ...]

Serves the site on 127.0.0.1 (a random free port), loads each page in headless Chromium (driven
over its DevTools pipe) in a 1280-pixel-wide window and in a 390-px phone viewport and, in the DOM
the browser produced, asserts: a non-empty <title> and <h1>; no raw TeX left in the visible text (`$...$`,
`\\(`, `\\frac{`, `\\underline{` ... outside code and typeset math); and, from what the page
template records after `load` (and its fonts) into `data-check`: every formula typeset by KaTeX,
no KaTeX/MathML error element, every `\\underline`/`\\overline` of the source drawn as a line
that spans its whole argument (p_A, not just the subscript A) on the right side of it; every
<img> loaded, every Python code block highlighted, a copy button on every code block, no code
block wider than its box, and no sideways scrolling of the page itself.  `--search TERM` also opens
`index.html?q=TERM` and asserts that the search box lists results (`--search-top PAGE` also: PAGE
among the first three).  `--screenshot PAGE` saves PAGE.png (and PAGE-390.png) next to the site.
Exits 1 listing every failing page.
"""
import argparse, fcntl, functools, http.server, json, os, re, shutil, subprocess, sys, tempfile, threading, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--hide-scrollbars', '--virtual-time-budget=10000',
                  '--window-size=1280,900']
RAW_LATEX = re.compile(r'\$[^$\s][^$]*\$|\\\(|\\\[|\\(frac|sigma|alpha|mathcal|Phi|left|right|sum|le|ge|underline'
                       r'|overline|mathrm|varepsilon|cdot|mid)\b|\\[A-Za-z]+\{')
WIDTHS = (1280, 390)
DECORATION = re.compile(r'\\(underline|overline)\b')


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


def run_chromium(args, profile, timeout=60, width=1280, height=900):
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith('--window-size')] + [f'--window-size={width},{height}']
    return subprocess.run([chromium(), *flags, f'--user-data-dir={profile}', *args],
                          capture_output=True, text=True, timeout=timeout)


def math_problems(c, source_has_math, source_decorations=0):
    "Problems with the page's math, from the template's data-check `c`."
    problems = []
    n, typeset = c.get('math', 0), c.get('katex', 0)
    if source_has_math and not typeset: problems.append('page has math but KaTeX typeset none of it')
    elif typeset < n: problems.append(f'{n - typeset} of {n} formulas not typeset by KaTeX')
    if c.get('math_errors'): problems.append(f"math rendering errors: {c['math_errors'][:3]}")
    decor = c.get('decorations', [])
    bad = [d for d in decor if d['cover'] < 0.9 or not d['placed'] or not d['visible']]
    for d in bad[:3]:
        problems.append(f"{d['kind']} of {d['tex']!r} " + (f"spans {d['cover']:.0%} of its argument" if d['cover'] < 0.9
                        else 'not drawn' if not d['visible'] else f"on the wrong side of its argument"))
    if len(bad) > 3: problems.append(f'... {len(bad)} bad underlines/overlines in all')
    if source_decorations > len(decor):
        problems.append(f'{source_decorations} \\underline/\\overline in the math, {len(decor)} drawn as lines')
    return problems


def furniture_problems(dom, title, c, width):
    "What every page of the site must carry: repository and issue links, favicon, og: tags, prev/next, a sane title."
    problems = []
    parts = [t.strip() for t in re.split(r'\s[–|-]\s', title)]
    if len(parts) > 1 and len(set(parts)) < len(parts): problems.append(f'title repeats itself: {title.strip()!r}')
    links = re.search(r'class="site-links"[^>]*>(.*?)</nav>', dom, re.S)
    hrefs = re.findall(r'href="([^"]+)"', links.group(1)) if links else []
    if not any(h.rstrip('/').endswith('/issues') for h in hrefs): problems.append('no link to the issue tracker in the header')
    if not any(re.match(r'https?://', h) and not h.rstrip('/').endswith('/issues') for h in hrefs):
        problems.append('no link to the repository in the header')
    if not re.search(r'<link[^>]+rel="icon"', dom): problems.append('no favicon')
    if not re.search(r'<meta[^>]+property="og:title"', dom): problems.append('no og: tags')
    if not re.search(r'class="page-nav"', dom): problems.append('no previous/next links')
    if width < 500:
        if c.get('title_top', 0) > 450: problems.append(f"the title starts {c['title_top']} px down a phone screen (sidebar not folded)")
    return problems


def check_page(browser, url, source_has_math, source_images=0, source_decorations=0, width=1280):
    "Problems with one rendered page at one window width (empty list if fine); `browser` a `DevTools`."
    try: dom = browser.dom(url, width)
    except Exception as e: return [f'chromium failed: {e}']
    p = Rendered(); p.feed(dom)
    problems = []
    if not p.title.strip(): problems.append('no <title>')
    if not p.h1.strip(): problems.append('no <h1>')
    text = ' '.join(' '.join(p.text).split())
    m = RAW_LATEX.search(text)
    if m: problems.append(f'raw LaTeX in visible text: {text[max(0, m.start()-40):m.end()+40]!r}')
    if p.check is None: problems.append('page script did not run (no data-check after load)')
    elif p.check['broken']: problems.append(f"images not loaded: {p.check['broken']}")
    elif p.check['images'] < source_images: problems.append(f"{source_images} images in the source, {p.check['images']} on the page")
    c = p.check or {}
    problems += math_problems(c, source_has_math, source_decorations)
    problems += furniture_problems(dom, p.title, c, width)
    if c.get('page_width', 0) > c.get('view_width', 1e9) + 1:
        problems.append(f"page scrolls sideways at {width} px: {c['page_width']} px wide in a {c['view_width']} px window"
                        + (f"; sticking out: {c['too_wide']}" if c.get('too_wide') else ''))
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

    def open(self, url, width, height=900):
        "A new tab showing `url` in a `width` x `height` viewport (a phone's, touch and all, below 500 px)."
        target = self.send('Target.createTarget', url='about:blank')['targetId']
        session = self.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        self.send('Emulation.setDeviceMetricsOverride', session, width=width, height=height,
                  deviceScaleFactor=2 if width < 500 else 1, mobile=width < 500)
        self.send('Page.navigate', session, url=url)
        return target, session

    def wait(self, session, expression, timeout):
        deadline = time.time() + timeout
        while not self.send('Runtime.evaluate', session, expression=expression, returnByValue=True)['result'].get('value'):
            if time.time() > deadline: return False
            time.sleep(0.1)
        return True

    def dom(self, url, width, timeout=30):
        "The DOM of `url` once loaded and its template's `data-check` recorded (or after `timeout` s without it)."
        target, session = self.open(url, width)
        try:
            if not self.wait(session, f"document.readyState === 'complete' && location.href === {json.dumps(url)}", timeout):
                raise TimeoutError(f'{url} did not load in {timeout}s')
            self.wait(session, "document.documentElement.hasAttribute('data-check')", 10)
            return self.send('Runtime.evaluate', session, expression='document.documentElement.outerHTML',
                             returnByValue=True)['result']['value']
        finally: self.send('Target.closeTarget', targetId=target)

    def screenshot(self, url, png, width, height):
        "Save what a reader sees of `url` in a `width` x `height` window as `png`."
        import base64
        target, session = self.open(url, width, height)
        try:
            self.wait(session, "document.documentElement.hasAttribute('data-check')", 30)
            data = self.send('Page.captureScreenshot', session, format='png')['data']
            Path(png).write_bytes(base64.b64decode(data))
        finally: self.send('Target.closeTarget', targetId=target)

    def close(self):
        self.proc.kill(); self.proc.wait(); os.close(self.to_w); os.close(self.from_r)


def search_results(base, profile, term, wait_s=20):
    "The result links the search box lists for `term` (index.html?q=term), waiting up to `wait_s` seconds; -1: no box."
    from urllib.parse import quote
    count = f"""new Promise(done => {{ const t0 = Date.now(); if (!window.PagefindUI) return done(-1);
      (function poll() {{
        const links = Array.from(document.querySelectorAll('.pagefind-ui__result-link')).map(a => a.href);
        const settled = links.length && links.length === window.__n && !document.querySelector('.pagefind-ui__loading');
        window.__n = links.length;      // results render progressively: wait until the list stops growing
        if (settled || Date.now() - t0 > {wait_s * 1000}) done(links); else setTimeout(poll, 500); }})(); }})"""
    browser = DevTools(profile)
    try: return browser.evaluate(f'{base}index.html?q={quote(term)}', count, timeout=wait_s + 30)
    finally: browser.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', default='_site')
    ap.add_argument('--screenshot', action='append', default=[], help='also save a PNG of this page')
    ap.add_argument('--search', default=None, help='check that searching this term lists results')
    ap.add_argument('--search-top', default=None, help='with --search: this page must be among the first five results (before "Load more")')
    ap.add_argument('--width', type=int, nargs='+', default=list(WIDTHS), help='window widths to check each page at')
    args = ap.parse_args(argv)
    site = Path(args.site).resolve()
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob('*.html'))
    if not pages: print(f'no pages in {site}'); return 1
    httpd = serve(site)
    base = f'http://127.0.0.1:{httpd.server_address[1]}/'
    failures = {}
    with tempfile.TemporaryDirectory() as profile:
        browser = DevTools(profile + '/pages')
        for page in pages:
            md = (site/page).with_suffix('.md')
            prose = re.sub(r'(?ms)^(`{3,}|~{3,}).*?^\1', '', md.read_text()) if md.exists() else ''
            prose = re.sub(r'`[^`]*`', '', prose)                       # math inside code is not math
            has_math = re.search(r'(?<![\\$])\$[^$\s]', prose) is not None
            decorations = len(DECORATION.findall(' '.join(re.findall(r'\$\$?[^$]+\$\$?', prose))))
            probs = []
            for w in args.width:
                found = check_page(browser, base + page, has_math, len(re.findall(r'!\[[^\]]*\]\(', prose)),
                                   decorations, width=w)
                probs += [x if w == args.width[0] else f'at {w} px: {x}' for x in found if w == args.width[0] or x not in probs]
            if probs: failures[page] = probs
            print(f"  {'FAILED' if probs else 'ok':6} {page}" + ''.join(f'\n         {x}' for x in probs))
        if args.search:
            found = search_results(base, profile + '/search', args.search)
            n = len(found) if isinstance(found, list) else found
            top = list(dict.fromkeys(Path(urlsplit(u).path).name for u in found))[:5] if isinstance(found, list) else []
            if n < 0: failures['search'] = ['index.html has no search box (pagefind-ui.js did not load)']
            elif not n: failures['search'] = [f'searching {args.search!r} listed no results']
            elif args.search_top and args.search_top not in top:
                failures['search'] = [f'searching {args.search!r}: {args.search_top} not among the first five results {top}']
            print(f"  {'FAILED' if 'search' in failures else 'ok':6} search {args.search!r}: {max(n, 0)} results, first {top}"
                  + ''.join(f'\n         {x}' for x in failures.get('search', [])))
        for page in args.screenshot:
            stem = re.sub(r'[^\w-]+', '_', page.replace('.html', '').replace('#', '-'))
            for w, h, suffix in ((1400, 1800, ''), (390, 844, '-390')):
                png = site/f'{stem}{suffix}.png'
                browser.screenshot(base + page, png, w, h)
                print(f'  screenshot {png}')
        browser.close()
    httpd.shutdown()
    print(f'browser check: {len(pages) - len(failures)} of {len(pages)} pages rendered')
    return 1 if failures else 0


if __name__ == '__main__': sys.exit(main())
