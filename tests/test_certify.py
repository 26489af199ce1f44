"""End-to-end tests of `rs_certify` and `rs_predict`: the installed commands, run as subprocesses on a digits model
trained for a few seconds. The `time` column is a measurement, so logs are compared on every other column."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

from randsmooth.analyze import read_log, certified_accuracy, clean_accuracy
from randsmooth.certify import CERTIFY_COLUMNS, PREDICT_COLUMNS, certify_dataset, settings_path, part_paths, read_log_rows
from randsmooth.train import train

BIN = Path(sys.executable).parent
ENV = os.environ | {'OMP_NUM_THREADS': '1'}          # several small processes on a small machine
SETTINGS = ['--N0', 100, '--N', 1000, '--batch', 10_000, '--skip', 15, '--seed', 3]   # 30 of the 450 test digits
EXAMPLES = list(range(0, 450, 15))

def run(*args, check=True, **kwargs):
    "Run an installed command; with `check`, fail with its stderr unless it succeeds."
    done = subprocess.run([str(BIN/str(args[0])), *map(str, args[1:])], capture_output=True, text=True, env=ENV,
                          timeout=300, **kwargs)
    if check: assert done.returncode == 0, done.stderr
    return done

def without_time(path): return pd.read_csv(path, sep='\t').drop(columns='time')

@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return train('digits', 'small_cnn', tmp_path_factory.mktemp('model'), sigma=0.25, epochs=2, batch=64, lr=0.1,
                 seed=0, progress=False)

@pytest.fixture(scope='module')
def certified(checkpoint, tmp_path_factory):
    "An uninterrupted single-process certify run: the reference the other runs must reproduce."
    out = tmp_path_factory.mktemp('reference')/'certify.tsv'
    done = run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS)
    assert f'{len(EXAMPLES)}/{len(EXAMPLES)}' in done.stderr      # the progress bar reached the end
    return out

def test_certify_log(certified, checkpoint):
    lines = certified.read_text().splitlines()
    assert lines[0].split('\t') == list(CERTIFY_COLUMNS)         # the header on line 1, the reference columns first
    log = read_log(certified)                                     # the analysis code reads it
    assert log.idx.tolist() == EXAMPLES
    assert (log.n == 1000).all() and (log.n0 == 100).all()
    certified_rows = log[log.predict != -1]
    assert (certified_rows.radius > 0).all() and (log.radius[log.predict == -1] == 0).all()
    for text, radius in zip(pd.read_csv(certified, sep='\t', dtype=str).radius, log.radius):
        assert float(text) == radius and (radius == 0 or len(text) > 5)   # full precision, not 3 digits
    assert clean_accuracy(log) > 0.5
    assert certified_accuracy(log, 0.0) >= certified_accuracy(log, 0.25) >= certified_accuracy(log, 0.5)
    settings = json.loads(settings_path(certified).read_text())
    assert (settings['N0'], settings['N'], settings['alpha'], settings['sigma'], settings['seed']) == (100, 1000, 0.001, 0.25, 3)
    assert settings['checkpoint'] == str(Path(checkpoint).resolve()) and len(settings['checkpoint_sha256']) == 64
    assert log.attrs['settings']['N'] == 1000

def test_predict_log(checkpoint, tmp_path):
    out = tmp_path/'predict.tsv'
    run('rs_predict', 'digits', checkpoint, 0.25, out, '--N', 100, '--batch', 1000, '--skip', 15, '--max', 12, '--quiet')
    assert out.read_text().splitlines()[0].split('\t') == list(PREDICT_COLUMNS)
    log = read_log(out)
    assert log.idx.tolist() == EXAMPLES[:12]                        # --max counts examples, not dataset indices
    assert ((log.predict == -1) == (log.pvalue > 0.001)).all()
    assert ((log.nA + log.nB) <= 100).all()

def test_resume_after_kill(checkpoint, tmp_path):
    "kill -9 a run part-way, tear its last line, run the same command again: the log equals an uninterrupted run's."
    settings = ['--N0', 100, '--N', 5000, '--batch', 1000, '--skip', 15, '--max', 16, '--quiet']
    killed = tmp_path/'killed.tsv'
    process = subprocess.Popen([str(BIN/'rs_certify'), 'digits', str(checkpoint), '0.25', str(killed), *map(str, settings)],
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(read_log_rows(killed, CERTIFY_COLUMNS)) < 3:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, 'the run wrote no rows'
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(read_log_rows(killed, CERTIFY_COLUMNS))
    assert 3 <= done_before < 16, 'the run was not killed part-way'
    with open(killed, 'a') as f: f.write('345\t3\t3\t0.41')         # and a torn last line, as a kill mid-write leaves
    run('rs_certify', 'digits', checkpoint, 0.25, killed, *settings)
    reference = certify_dataset('digits', checkpoint, 0.25, tmp_path/'uninterrupted.tsv', N0=100, N=5000, batch=1000,
                                skip=15, max=16, progress=False)
    pd.testing.assert_frame_equal(without_time(killed), without_time(reference))
    assert read_log(killed).idx.tolist() == EXAMPLES[:16]             # every index exactly once, in order

def test_sharded_equals_single_process(certified, checkpoint, tmp_path):
    out = tmp_path/'sharded.tsv'
    # `--` ends torchrun's options: otherwise it takes `--max` for an abbreviation of its `--max-restarts`
    done = subprocess.run([str(BIN/'torchrun'), '--standalone', '--nproc_per_node', '2', '--', str(BIN/'rs_certify'),
                           'digits', str(checkpoint), '0.25', str(out), *map(str, SETTINGS), '--max', '20', '--quiet'],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert part_paths(out) == []                                      # the parts were merged and removed
    pd.testing.assert_frame_equal(without_time(out), without_time(certified).iloc[:20])
    assert json.loads(settings_path(out).read_text())['world_size'] == 2

@pytest.mark.parametrize('args, message', [
    (['--N', 2000], 'N: 1000 there, 2000 now'),                      # a different setting on resume
    (['--skip', 0], 'skip'),                                          # (the other range checks: nbs/07_certify.ipynb)
])
def test_bad_settings_are_refused(certified, checkpoint, args, message):
    before = certified.read_text()
    done = run('rs_certify', 'digits', checkpoint, 0.25, certified, *SETTINGS, *args, check=False)
    assert done.returncode == 1 and message in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert certified.read_text() == before

def test_bad_inputs_fail_before_sampling(certified, checkpoint, tmp_path):
    cases = [(['rs_certify', 'digits', tmp_path/'missing.pth', 0.25, tmp_path/'a.tsv'], 'does not exist'),
             (['rs_certify', 'synthetic', checkpoint, 0.25, tmp_path/'b.tsv'], 'synthetic'),    # checkpoint/dataset mismatch
             (['rs_predict', 'digits', checkpoint, 0.25, certified, '--N', 100], 'command')]    # a certify run's OUTFILE
    for args, message in cases:
        done = run(*args, check=False)
        assert done.returncode == 1 and message in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert not (tmp_path/'a.tsv').exists() and not (tmp_path/'b.tsv').exists()
