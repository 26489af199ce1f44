"""End-to-end test of `rs_demo`, the first command of the README: it trains, certifies, and writes
its folder.

A small run (two noise levels, a few epochs, N = 300, every 5th test digit) checks everything the
full demo does; the full demo (`rs_demo OUTDIR` with its defaults) runs the same code with larger
numbers.
"""
import csv, json, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from scipy.stats import norm

SMALL = ['--sigmas', '0.25', '0.5', '--epochs', '3', '--N', '300', '--skip', '5', '--quiet']


def rs_demo(*args):
    code = 'from randsmooth.cli import rs_demo; rs_demo()'
    return subprocess.run([sys.executable, '-c', code, *map(str, args)],
                          capture_output=True, text=True)

def certified_accuracy(path, radius):
    "The README's definition, from the raw TSV without randsmooth: correct and radius >= r."
    with open(path) as f: rows = list(csv.DictReader(f, delimiter='\t'))
    return sum(r['correct'] == '1' and float(r['radius']) >= radius for r in rows) / len(rows), rows


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo')/'out'
    tic = time.time()
    done = rs_demo(out, *SMALL)
    return out, done, time.time() - tic


def test_demo_writes_its_folder(demo_run):
    out, done, _ = demo_run
    assert done.returncode == 0, done.stderr
    names = {p.name for p in out.iterdir()}
    assert {'sigma_0.25', 'sigma_0.50', 'certify_sigma_0.25.tsv', 'certify_sigma_0.50.tsv',
            'certify_sigma_0.25.tsv.json', 'certify_sigma_0.50.tsv.json', 'table.md',
            'certified_accuracy.png', 'certified_accuracy.pdf'} <= names
    assert (out/'certified_accuracy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    for sigma in ('0.25', '0.50'):
        checkpoint = torch.load(out/f'sigma_{sigma}'/'checkpoint.pth.tar', weights_only=True,
                                map_location='cpu')
        assert isinstance(checkpoint, dict)
    assert str(out.resolve()) in done.stdout


def test_demo_table_matches_its_logs(demo_run):
    out, done, _ = demo_run
    cells = lambda line: [c.strip() for c in line.strip().strip('|').split('|')[1:]]
    printed = {line.split('|')[1].strip(): cells(line)
               for line in done.stdout.splitlines() if line.startswith('| σ')}
    header = next(line for line in done.stdout.splitlines() if line.startswith('| log'))
    radii = [float(c.strip()[4:]) for c in header.strip().strip('|').split('|')[1:]]
    for sigma in (0.25, 0.5):
        log = out/f'certify_sigma_{sigma:.2f}.tsv'
        expected = [f'{certified_accuracy(log, r)[0]:.3f}' for r in radii]
        assert printed[f'σ = {sigma:.2f}'] == expected, sigma
        row = f'| σ = {sigma:.2f} | ' + ' | '.join(expected) + ' |'
        assert row in (out/'table.md').read_text()


def test_demo_certificates_are_consistent(demo_run):
    out, _, _ = demo_run
    for sigma in (0.25, 0.5):
        log = out/f'certify_sigma_{sigma:.2f}.tsv'
        settings = json.loads(Path(f'{log}.json').read_text())
        got = tuple(settings[k] for k in ('dataset', 'sigma', 'n', 'n0', 'alpha'))
        assert got == ('digits', sigma, 300, 100, 0.001)
        accuracy, rows = certified_accuracy(log, 0.0)
        assert len(rows) == 90                                   # every 5th of the 450 test digits
        assert accuracy > 0.5                            # the smoothed classifier learned something
        cap = sigma * norm.ppf(0.001 ** (1 / 300))       # the largest radius N = 300 allows
        assert max(float(r['radius']) for r in rows) <= cap * (1 + 1e-9)
        for r in rows:
            if r['predict'] == '-1': assert float(r['radius']) == 0.0 and r['correct'] == '0'
            else: assert abs(float(r['radius']) - sigma * norm.ppf(float(r['pA_lower']))) < 1e-7


def test_demo_resumes_without_redoing_work(demo_run):
    out, first, _ = demo_run
    mtimes = {p: p.stat().st_mtime for p in out.glob('sigma_*/checkpoint.pth.tar')}
    again = rs_demo(out, *SMALL)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert {p: p.stat().st_mtime for p in out.glob('sigma_*/checkpoint.pth.tar')} == mtimes


def test_demo_bad_arguments(tmp_path):
    done = rs_demo(tmp_path/'out', '--sigmas', '-0.25', '--quiet')
    assert done.returncode == 1 and 'sigmas' in done.stderr and 'Traceback' not in done.stderr
    (tmp_path/'file').write_text('not a folder')
    done = rs_demo(tmp_path/'file', '--quiet')
    assert done.returncode == 1 and 'outdir' in done.stderr
    done = rs_demo(tmp_path/'out', '--N', '0', '--quiet')
    assert done.returncode == 1 and 'N' in done.stderr
    assert not (tmp_path/'out').exists()                 # nothing was written before the error
