"""End-to-end tests of `rs_analyze`: the paper's numbers from its own raw logs, our logs, and bad input.

Run with `python -m pytest -q tests`. The tests that need the paper's logs (`../shared/reference/locuslab-logs`
beside the repository) are skipped where they are absent.
"""
import contextlib, csv, io, json, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest
from randsmooth.cli import rs_analyze as rs_analyze_command

ROOT = Path(__file__).resolve().parents[1]
REF = (ROOT/'..'/'shared'/'reference'/'locuslab-logs').resolve()
needs_reference = pytest.mark.skipif(not REF.is_dir(), reason="the paper's logs (../shared/reference) are absent")

CIFAR = {0.12: [0.814, 0.586, 0.000, 0.000, 0.000, 0.000, 0.000],   # the reference README's table
         0.25: [0.748, 0.600, 0.428, 0.266, 0.000, 0.000, 0.000],
         0.50: [0.652, 0.546, 0.414, 0.320, 0.234, 0.094, 0.000],
         1.00: [0.472, 0.392, 0.340, 0.278, 0.216, 0.140, 0.100]}
CIFAR_RADII = [0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
IMAGENET = {0.25: [0.667, 0.494, 0.000, 0.000, 0.000, 0.000, 0.000],
            0.50: [0.572, 0.458, 0.372, 0.286, 0.000, 0.000, 0.000],
            1.00: [0.436, 0.378, 0.326, 0.260, 0.194, 0.148, 0.122]}
IMAGENET_RADII = [0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


def rs_analyze(*args):
    "Run the `rs_analyze` command line in this process (argument parsing included): its exit status, stdout and stderr."
    stdout, argv, code, stderr = io.StringIO(), sys.argv, 0, ''
    sys.argv = ['rs_analyze', *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout): rs_analyze_command()
    except SystemExit as e: code, stderr = (1, str(e.code)) if isinstance(e.code, str) else (e.code or 0, '')
    finally: sys.argv = argv
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr)

def rs_analyze_process(*args):
    "Run `rs_analyze` as its own process, as a user does."
    code = 'from randsmooth.cli import rs_analyze; rs_analyze()'
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True)

def reference_log(dataset, sigma):
    arch = {'cifar10': 'resnet110', 'imagenet': 'resnet50'}[dataset]
    return REF/'certify'/dataset/arch/f'noise_{sigma:.2f}'/'test'/f'sigma_{sigma:.2f}'

def markdown_tables(text):
    "Every markdown table in `text`, as a list of {first cell: [other cells]} dicts, in order."
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith('| ') and not line.startswith('| ---'):
            cells = [c.strip() for c in line.strip('|').split('|')]
            if current is None: current = {'__header__': cells[1:]}; tables.append(current)
            else: current[cells[0]] = cells[1:]
        elif not line.startswith('| ---'): current = None
    return tables

def raw_rows(path):
    with open(path) as f: return list(csv.DictReader(f, delimiter='\t'))

def seconds(text):
    if ':' not in text: return float(text)
    h, m, s = text.split(':')
    return int(h) * 3600 + int(m) * 60 + float(s)


@needs_reference
@pytest.mark.parametrize('dataset, expected, radii', [('cifar10', CIFAR, CIFAR_RADII), ('imagenet', IMAGENET, IMAGENET_RADII)])
def test_paper_tables_reproduced(dataset, expected, radii):
    done = rs_analyze(*[reference_log(dataset, s) for s in expected], '--radii', *radii)
    assert done.returncode == 0, done.stderr
    table = markdown_tables(done.stdout)[0]
    assert table['__header__'] == [f'r = {r:g}' for r in radii]
    for sigma, row in expected.items():
        assert table[f'σ = {sigma:.2f}'] == [f'{v:.3f}' for v in row], sigma
    if dataset == 'cifar10': assert table['σ = 0.25'][2] == '0.428'


@needs_reference
def test_table1_best_sigma_per_radius():
    done = rs_analyze(*[reference_log('imagenet', s) for s in (0.25, 0.5, 1.0)], '--radii', 0.5, 1, 2, 3)
    best = markdown_tables(done.stdout)[2]
    assert best['__header__'] == ['best', 'certified accuracy', 'clean accuracy']
    got = {r: (row[0], round(100 * float(row[1])), round(100 * float(row[2]))) for r, row in best.items() if r != '__header__'}
    assert got == {'0.5': ('σ = 0.25', 49, 67), '1': ('σ = 0.50', 37, 57), '2': ('σ = 1.00', 19, 44), '3': ('σ = 1.00', 12, 44)}


@needs_reference
def test_both_time_formats_become_seconds():
    logs = [reference_log('cifar10', 0.25), reference_log('cifar10', 0.12)]   # `15.4` and `0:00:13.736080`
    summary = markdown_tables(rs_analyze(*logs).stdout)[1]
    for path, label in zip(logs, ('σ = 0.25', 'σ = 0.12')):
        rows = raw_rows(path)
        assert abs(float(summary[label][-1]) - sum(seconds(r['time']) for r in rows) / len(rows)) < 1e-3
        assert summary[label][0] == str(len(rows))


@needs_reference
def test_predict_table_against_the_gold_run():
    paths = [REF/'predict'/'imagenet'/'resnet50'/'noise_0.25'/'test'/f'N_{n}' for n in (100, 1000, 10_000, 100_000)]
    done = rs_analyze(*paths)
    assert done.returncode == 0, done.stderr
    summary, table = markdown_tables(done.stdout)[:2]          # a summary per run, then Table 4
    assert summary['N_100'][0] == '500' and summary['N_100000'][0] == '500'
    gold = {r['idx']: r['predict'] for r in raw_rows(paths[-1])}
    for n, path in zip(('100', '1000', '10000'), paths):
        rows = raw_rows(path)
        abstain = sum(r['predict'] == '-1' for r in rows) / len(rows)
        correct_accurate = sum(r['correct'] == '1' and r['predict'] == gold[r['idx']] for r in rows) / len(rows)
        assert table[n][0] == f'{correct_accurate:.3f}' and table[n][4] == f'{abstain:.3f}', (n, table[n])
    assert [table[n][4] for n in ('100', '1000', '10000')] == ['0.092', '0.032', '0.010']


@needs_reference
def test_latex_and_plot(tmp_path):
    done = rs_analyze(reference_log('cifar10', 0.25), reference_log('cifar10', 0.5), '--latex', '--plot', tmp_path/'fig6.png')
    assert done.returncode == 0, done.stderr
    assert r'\begin{tabular}' in done.stdout and r'$\sigma$ = 0.25 & 0.748' in done.stdout
    assert (tmp_path/'fig6.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (tmp_path/'fig6.pdf').read_bytes()[:5] == b'%PDF-'


HEADER = 'idx\tlabel\tpredict\tradius\tcorrect\ttime\tn0\tn\tnA\tnB\tpA_lower\n'

def our_log(tmp_path, name, rows, **settings):
    "A log in our format with its settings side file."
    path = tmp_path/name
    path.write_text(HEADER + ''.join('\t'.join(map(str, r)) + '\n' for r in rows))
    (tmp_path/f'{name}.json').write_text(json.dumps({'dataset': 'digits', 'sigma': 0.25, 'N': 1000, 'alpha': 0.001, **settings}))
    return path

ROWS = [(0, 3, 3, 0.5, 1, 0.1, 100, 1000, 980, 20, 0.9), (5, 1, 1, 0.2, 1, 0.1, 100, 1000, 800, 150, 0.7),
        (10, 2, -1, 0.0, 0, 0.1, 100, 1000, 400, 300, 0.37), (15, 4, 7, 0.3, 0, 0.1, 100, 1000, 900, 50, 0.85)]

def test_our_logs(tmp_path):
    path = our_log(tmp_path, 'run.tsv', ROWS)
    table, summary = markdown_tables(rs_analyze(path, '--radii', 0, 0.2, 0.21, 0.5, 0.51).stdout)[:2]
    assert table['σ = 0.25'] == ['0.500', '0.500', '0.250', '0.250', '0.000']
    assert summary['σ = 0.25'][:4] == ['4', '0.500', '0.250', f'{0.7 / 4:.3f}']


def test_bad_input_names_file_and_line(tmp_path):
    good = our_log(tmp_path, 'good.tsv', ROWS)
    cases = {'empty.tsv': ('', 'empty'),
             'truncated.tsv': (HEADER + '0\t3\t3\t0.5\t1\t0.1\t100\t1000\t980\n', 'line 2'),
             'malformed.tsv': (HEADER + '0\t3\t3\tabc\t1\t0.1\t100\t1000\t980\t20\t0.9\n', 'line 2, column radius'),
             'header.tsv': ('a\tb\tc\n1\t2\t3\n', 'line 1')}
    for name, (text, message) in cases.items():
        (tmp_path/name).write_text(text)
        done = rs_analyze(tmp_path/name)
        assert done.returncode == 1 and message in done.stderr and name in done.stderr, (name, done.stderr)
        assert 'Traceback' not in done.stderr
    done = rs_analyze(good, '--radii', 0.5, -1)
    assert done.returncode == 1 and 'radii' in done.stderr
    done = rs_analyze(tmp_path/'missing.tsv')
    assert done.returncode == 1 and 'missing.tsv' in done.stderr


def test_the_installed_command(tmp_path):
    "As its own process: a table on stdout and exit status 0; a bad log is one line on stderr and exit status 1."
    done = rs_analyze_process(our_log(tmp_path, 'good.tsv', ROWS), '--radii', 0, 0.5)
    assert done.returncode == 0 and '| σ = 0.25 | 0.500 | 0.250 |' in done.stdout, done.stderr
    (tmp_path/'cut.tsv').write_text(HEADER + '0\t3\t3\t0.5\t1\t0.1\t100\t1000\t980\t20\t0.9\n5\t1\t1\t0.2\n')
    done = rs_analyze_process(tmp_path/'cut.tsv')
    assert done.returncode == 1 and 'cut.tsv, line 3' in done.stderr and 'Traceback' not in done.stderr, done.stderr


def test_mixed_logs(tmp_path):
    digits = our_log(tmp_path, 'a.tsv', ROWS)
    other_dataset = our_log(tmp_path, 'b.tsv', ROWS, dataset='synthetic')
    rows_2000 = [r[:7] + (2000,) + r[8:] for r in ROWS]                          # rows that drew n = 2000
    other_n = our_log(tmp_path, 'c.tsv', rows_2000, N=2000, sigma=0.5)
    done = rs_analyze(digits, other_dataset)
    assert done.returncode == 1 and 'dataset' in done.stderr
    assert rs_analyze(digits, other_dataset, '--mixed').returncode == 1       # datasets never mix
    done = rs_analyze(digits, other_n)
    assert done.returncode == 1 and 'N' in done.stderr and '--mixed' in done.stderr
    done = rs_analyze(digits, other_n, '--mixed')
    assert done.returncode == 0 and 'σ = 0.50, N = 2000' in done.stdout, done.stderr
    (tmp_path/'p.tsv').write_text('idx\tlabel\tpredict\tcorrect\ttime\n0\t1\t1\t1\t0.5\n')
    done = rs_analyze(digits, tmp_path/'p.tsv')
    assert done.returncode == 1 and 'Predict' in done.stderr


def test_help_and_argument_errors_import_nothing_heavy(tmp_path):
    "`--help` and a bad argument answer before torch, pandas, scipy or matplotlib are imported."
    probe = ('import sys\nfrom randsmooth.cli import rs_analyze\nsys.argv = ["rs_analyze", *sys.argv[1:]]\n'
             'try: rs_analyze()\nexcept SystemExit as e: print(e)\n'
             'print(sorted(m for m in ("torch", "pandas", "scipy", "matplotlib") if m in sys.modules))')
    for args in (['--help'], ['run.tsv', '--radii', '-1'], ['run.tsv', '--plot', 'x.jpg']):
        done = subprocess.run([sys.executable, '-c', probe, *args], capture_output=True, text=True, cwd=tmp_path)
        assert done.stdout.endswith('[]\n'), (args, done.stdout, done.stderr)


def test_a_checkpoint_is_named_not_decoded(tmp_path):
    (tmp_path/'checkpoint.pth.tar').write_bytes(b'PK\x03\x04\x14\x00\x00\x00\x08\x00\x80\x02}q')
    done = rs_analyze(tmp_path/'checkpoint.pth.tar')
    assert done.returncode == 1 and 'checkpoint.pth.tar' in done.stderr and 'not a text log' in done.stderr
    assert 'codec' not in done.stderr


def test_certify_log_without_radius_is_an_error(tmp_path):
    path = our_log(tmp_path, 'run.tsv', ROWS)
    lines = [line.split('\t') for line in path.read_text().splitlines()]
    path.write_text(''.join('\t'.join(f[:3] + f[4:]) + '\n' for f in lines))          # drop the radius column
    done = rs_analyze(path)
    assert done.returncode == 1 and 'a Certify log' in done.stderr and 'run.tsv' in done.stderr, done.stderr


def test_plot_inside_a_regular_file_is_one_line(tmp_path):
    (tmp_path/'afile').write_text('x')
    done = rs_analyze_process(our_log(tmp_path, 'run.tsv', ROWS), '--plot', tmp_path/'afile'/'fig')
    assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr
    assert done.stderr.strip().count('\n') == 0 and 'is a file, not a folder' in done.stderr


def test_a_single_predict_log_is_summarised(tmp_path):
    (tmp_path/'p.tsv').write_text('idx\tlabel\tpredict\tcorrect\ttime\n0\t1\t1\t1\t0.5\n1\t2\t-1\t0\t0.3\n')
    done = rs_analyze(tmp_path/'p.tsv')
    assert done.returncode == 0, done.stderr
    summary = markdown_tables(done.stdout)[0]
    assert summary['p.tsv'] == ['2', '0.500', '0.500', '0.400']


def test_default_radii_stop_at_the_cap(tmp_path):
    "sigma 0.25, N 1000, alpha 0.001: nothing above 0.25 Phi^-1(0.001^(1/1000)) = 0.615 can be certified."
    table = markdown_tables(rs_analyze(our_log(tmp_path, 'run.tsv', ROWS)).stdout)[0]
    radii = [float(h.split('= ')[1]) for h in table['__header__']]
    assert radii[0] == 0 and max(radii) <= 0.615 and len(radii) >= 4, radii


def test_sequential_logs_are_never_credited_more(tmp_path):
    "An adaptive run's row rests on look 3 of 100, 200, 400, ..., 1000 at alpha/2/(K-1); never above its radius."
    from scipy.stats import beta, norm
    looks, alpha = [100, 200, 400, 800, 1000], 0.001
    level = alpha / 2 / (len(looks) - 1)
    pA = beta.ppf(level, 390, 400 - 390 + 1)
    radius = 0.25 * norm.ppf(pA)
    rows = [(0, 3, 3, repr(float(radius)), 1, 0.1, 100, 400, 390, 10, repr(float(pA)))]
    path = our_log(tmp_path, 'adaptive.tsv', rows, mode='adaptive')
    from randsmooth.reanalysis import reanalyze
    again = reanalyze(path).radius.iloc[0]
    assert again <= radius + 1e-12 and abs(again - radius) < 1e-9
    assert 0.25 * norm.ppf(beta.ppf(alpha, 390, 11)) > radius + 0.01      # the full-alpha reading overstates


# ---- issue 20-D: re-analysis never raises radii -----------------------------------------------

def adaptive_rows(N=20_000, alpha=0.001, sigma=0.25, m=12, seed=0, ps=None, tolerance=0.005):
    "Rows of an adaptive run (chapter 12's own test on binomial draws), as certify_dataset writes."
    import numpy as np
    from randsmooth.adaptive import sequential_certify
    rng = np.random.default_rng(seed)
    ps = rng.uniform(0.9, 0.9995, m) if ps is None else ps
    rows = []
    for i, p in enumerate(ps):
        d = sequential_certify(lambda num: rng.binomial(num, p), sigma, N, alpha, tolerance)
        ok = d.radius > 0
        rows.append((i, 1, 1 if ok else -1, repr(float(d.radius)), int(ok), 0.1, 100, d.n, d.nA,
                     d.n - d.nA, repr(float(d.pA_lower))))
    return rows

ADAPTIVE = dict(sigma=0.25, N=20_000, alpha=0.001, mode='adaptive', adaptive=True, tolerance=0.005)

def test_adaptive_log_without_its_settings_is_refused(tmp_path):
    "20-D: an adaptive log without its own settings file was re-decided as fixed-n at full alpha."
    from randsmooth.reanalysis import reanalyze
    from randsmooth.logs import read_log
    rows = adaptive_rows()
    path = our_log(tmp_path, 'adaptive.tsv', rows, **ADAPTIVE)
    logged = read_log(path).radius.to_numpy()
    assert len({r[7] for r in rows}) > 1                       # n varies: 6400, 12800, 20000
    assert (reanalyze(path).radius.to_numpy() <= logged + 1e-12).all()   # its own settings: fine
    fixed = {'dataset': 'digits', 'sigma': 0.25, 'alpha': 0.001}
    cases = {'missing': None,
             'another run': dict(fixed, N=100_000, mode='fixed'),
             'edited (mode dropped)': dict(fixed, N=20_000),
             'edited (fixed)': dict(fixed, N=20_000, mode='fixed')}
    for case, settings in cases.items():
        side = tmp_path/'adaptive.tsv.json'
        side.unlink(missing_ok=True)
        if settings is not None: side.write_text(json.dumps(settings))
        with pytest.raises(ValueError) as e:
            again = reanalyze(path, sigma=0.25, alpha=0.001)
            print(case, (again.radius.to_numpy() > logged + 1e-12).sum(), 'radii rise')
        message = str(e.value)
        assert 'adaptive.tsv' in message and 'settings' in message, (case, message)
        assert 'sequential' in message or 'look' in message, (case, message)


def test_adaptive_log_at_its_budget_read_as_fixed_is_refused(tmp_path):
    "Every row at the last look (n = N for all): only the rows' pA_lower tell it was sequential."
    import numpy as np
    from randsmooth.reanalysis import reanalyze, certified_accuracy_bound
    rows = [r for r in adaptive_rows(N=1000, ps=np.full(12, 0.96), tolerance=0.0) if r[7] == 1000]
    assert len(rows) >= 6
    fixed = dict(sigma=0.25, alpha=0.001, N=1000)
    path = our_log(tmp_path, 'budget.tsv', rows, **fixed)
    with pytest.raises(ValueError, match='pA_lower'): reanalyze(path)
    with pytest.raises(ValueError, match='pA_lower'): certified_accuracy_bound(path, 0.1)


def test_rs_analyze_refuses_settings_that_contradict_the_rows(tmp_path):
    settings = ADAPTIVE | {'mode': 'fixed', 'adaptive': False}
    path = our_log(tmp_path, 'adaptive.tsv', adaptive_rows(), **settings)
    done = rs_analyze(path)
    assert done.returncode == 1 and 'adaptive.tsv' in done.stderr, done.stderr
    assert 'vary' in done.stderr and 'Traceback' not in done.stderr, done.stderr


def counted_rows(nAs=(980, 800, 400, 900), labels=(3, 1, 2, 4), predicted=(3, 1, 2, 7), N=1000,
                 alpha=0.001, sigma=0.25):
    "Rows like ROWS, with radius and pA_lower as CERTIFY decides them from the counts."
    from randsmooth.smooth import certificate_from_counts
    nBs = [N - k for k in nAs]
    pA, _, ok, radius = certificate_from_counts(list(nAs), nBs, N, alpha, 'cohen', sigma)
    return [(5 * i, y, c if ok[i] else -1, repr(float(radius[i])), int(ok[i] and c == y), 0.1,
             100, N, k, N - k, repr(float(pA[i])))
            for i, (k, y, c) in enumerate(zip(nAs, labels, predicted))]


def test_what_if_is_marked_and_never_valid(tmp_path):
    "20-D: reanalyze(n=...) looked like a run's log, and certified_accuracy_bound took it as one."
    import matplotlib; matplotlib.use('Agg')
    from randsmooth.reanalysis import reanalyze, certified_accuracy_bound
    from randsmooth.analyze import (certified_accuracy_table, log_label, plot_certified_accuracy,
                                    summary_table, best_sigma_table)
    path = our_log(tmp_path, 'run.tsv', counted_rows())
    honest = reanalyze(path)
    assert not honest.attrs.get('what_if') and 'what-if' not in log_label(honest)
    certified_accuracy_bound(honest, 0.1)                      # its own procedure: a valid bound
    what_if = reanalyze(path, n=1_000_000)
    assert what_if.attrs['what_if'] and what_if.attrs['settings']['what_if']
    assert 'what-if' in log_label(what_if)
    with pytest.raises(ValueError, match='what-if'): certified_accuracy_bound(what_if, 0.1)
    assert all('what-if' in i for i in certified_accuracy_table([what_if], [0]).index)
    best = best_sigma_table([what_if, honest], [0], allow_mixed=True)['best'].iloc[0]
    assert 'what-if' in best
    assert all('what-if' in i for i in summary_table([what_if]).index)
    for labels in (None, ['mine']):                            # even under the caller's label
        fig = plot_certified_accuracy([what_if], labels)
        assert all('what-if' in line.get_label() for line in fig.axes[0].lines)
    assert reanalyze(what_if).attrs['what_if']                 # a what-if stays one
    assert not reanalyze(path, n=1000).attrs.get('what_if')    # the logged n: no what-if


def test_infer_counts_never_raises_a_radius():
    "20-D: infer_counts took the closest count, above the true one in about half the rows."
    import numpy as np
    import pandas as pd
    from randsmooth.reanalysis import infer_counts, reanalyze
    from randsmooth.analyze import rounding_slack
    from randsmooth.smooth import certificate_from_counts
    N, alpha, sigma, m = 100_000, 0.001, 0.5, 6000
    rng = np.random.default_rng(0)
    nA = rng.binomial(N, rng.uniform(0.45, 1.0, m))
    _, _, certified, radius = certificate_from_counts(nA, N - nA, N, alpha, 'cohen', sigma)
    printed = [float(f'{r:.3}') for r in radius]               # the reference code's `{:.3}`
    log = pd.DataFrame(dict(idx=range(m), label=1, predict=np.where(certified, 1, -1),
                            radius=printed, correct=certified.astype(int), time=0.1))
    log.attrs.update(kind='certify', path='ref.tsv', settings=dict(sigma=sigma))
    inferred = infer_counts(log, N, alpha)
    again = reanalyze(inferred).radius.to_numpy()
    assert (again <= radius).all(), (again - radius).max()
    assert (inferred.nA.to_numpy()[certified] <= nA[certified]).all()
    equal = (again == radius)[certified].mean()
    print(f'{certified.sum()} certified rows: re-analysed radius equal to the true one in '
          f'{equal:.1%}')
    assert (radius - again <= 2 * rounding_slack(printed, 3) + 1e-12).all()   # below by < 2 h


def test_adaptive_reanalysis_keeps_alpha():
    "Statistical check: re-analysed adaptive radii exceed the true radius in <= alpha of the rows."
    import numpy as np
    import pandas as pd
    from scipy.stats import binom, norm
    from randsmooth.reanalysis import reanalyze
    from randsmooth.stats import lower_confidence_bound
    alpha, N, trials, p = 0.05, 2000, 1000, 0.8
    rows = adaptive_rows(N=N, alpha=alpha, sigma=1.0, ps=np.full(trials, p), seed=1,
                         tolerance=0.01)
    log = pd.DataFrame(rows, columns=HEADER.strip().split('\t'))
    log = log.astype({'radius': float, 'pA_lower': float})
    log.attrs.update(kind='certify', path='sim.tsv',
                     settings=dict(ADAPTIVE, sigma=1.0, N=N, alpha=alpha, tolerance=0.01))
    wrong = (reanalyze(log).radius.to_numpy() > norm.ppf(p)).sum()
    limit = binom.ppf(0.999, trials, alpha)         # a correct method passes w.p. >= 0.999
    assert wrong <= limit, (wrong, limit)
    full = norm.ppf(lower_confidence_bound(log.nA.to_numpy(), log.n.to_numpy(), alpha))
    assert (full > norm.ppf(p)).sum() > limit       # the old full-alpha reading fails it


@needs_reference
@pytest.mark.parametrize('dataset, sigma, alpha',
                         [('imagenet', 0.5, 0.01), ('cifar10', 0.12, 0.001)])
def test_reference_logs_still_reanalyse(dataset, sigma, alpha):
    "The paper's logs: read, counts inferred, re-analysed, never above their radii (to rounding)."
    from randsmooth.logs import read_log
    from randsmooth.reanalysis import infer_counts, reanalyze
    from randsmooth.analyze import rounding_slack
    log = read_log(reference_log(dataset, sigma))
    again = reanalyze(infer_counts(log, alpha=alpha)).radius.to_numpy()
    logged = log.radius.to_numpy()
    assert (again <= logged + rounding_slack(logged, 3) + 1e-12).all()
    assert (again[logged > 0] > 0).mean() > 0.99


# ---- issue 25-6: several logs in one plot -------------------------------------------------------

def test_plot_labels_are_distinct_and_example_sets_compared(tmp_path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.figure
    from unittest import mock
    paths = []
    for run in ('run1', 'run2', 'run3'):
        (tmp_path/run).mkdir()
        paths.append(our_log(tmp_path/run, 'log.tsv', ROWS))
    seen, real = {}, matplotlib.figure.Figure.savefig
    def spy(fig, *args, **kwargs):
        seen['labels'] = [line.get_label() for line in fig.axes[0].lines]
        return real(fig, *args, **kwargs)
    with mock.patch.object(matplotlib.figure.Figure, 'savefig', spy):
        done = rs_analyze(*paths, '--plot', tmp_path/'fig.png')
    assert done.returncode == 0, done.stderr
    labels = seen['labels']
    assert len(set(labels)) == 3 and all('σ = 0.25' in label for label in labels), labels
    assert all(run in label for run, label in zip(('run1', 'run2', 'run3'), labels)), labels
    table = markdown_tables(done.stdout)[0]
    assert set(table) - {'__header__'} == set(labels)         # the table and the plot agree
    assert 'different examples' not in done.stdout
    fewer = our_log(tmp_path, 'fewer.tsv', ROWS[:3])
    done = rs_analyze(paths[0], fewer)
    assert done.returncode == 0 and 'different examples' in done.stdout, done.stdout
