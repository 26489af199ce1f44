"""End-to-end tests of `rs_certify` and `rs_predict`: the commands, run as processes on a digits model
trained for a second. The `time` column is a measurement, so logs are compared on every other column."""
import copy, dataclasses, json, os, signal, subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from randsmooth.analyze import certified_accuracy, clean_accuracy
from randsmooth.logs import CERTIFY_COLUMNS, PREDICT_COLUMNS, read_log, settings_path, part_paths, read_log_rows
from randsmooth.certify import certify_dataset, model_fingerprint, certify_command
from randsmooth.settings import CertifySettings
from randsmooth.data import get_dataset
from randsmooth.models import get_architecture
from randsmooth.model_files import load_model, save_checkpoint
from randsmooth.smooth import Smooth

BIN = Path(sys.executable).parent
ENV = os.environ | {'OMP_NUM_THREADS': '1'}          # several small processes on a small machine
SETTINGS = ['--N0', 100, '--N', 1000, '--batch', 10_000, '--skip', 15, '--seed', 3]   # 30 of the 450 test digits
EXAMPLES = list(range(0, 450, 15))

def command_line(name, *args):
    "The command `name` of `randsmooth.cli` (what its console script runs), as a process's argument list."
    script = f"import sys; sys.argv[0] = {name!r}; from randsmooth.cli import {name}; sys.exit({name}())"
    return [sys.executable, '-c', script, *map(str, args)]

def run(*args, check=True, **kwargs):
    "Run a command as a process; with `check`, fail with its stderr unless it succeeds."
    done = subprocess.run(command_line(*args), capture_output=True, text=True, env=ENV, timeout=300, **kwargs)
    if check: assert done.returncode == 0, done.stderr
    return done

def without_time(path): return pd.read_csv(path, sep='\t').drop(columns='time')

def briefly_trained(sigma=0.25, steps=300):
    "The library's digits MLP (normalisation inside), trained for a second under noise."
    torch.manual_seed(0)
    data = get_dataset('digits', 'train')
    xs, ys = torch.stack([x for x, _ in data]), torch.tensor([y for _, y in data])
    model = get_architecture('mlp', 'digits')
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        i = torch.randint(len(xs), (64,))
        loss = torch.nn.functional.cross_entropy(model(xs[i] + sigma * torch.randn_like(xs[i])), ys[i])
        opt.zero_grad(); loss.backward(); opt.step()
    return model.eval()

@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('model')/'checkpoint.pth.tar'
    return save_checkpoint(path, briefly_trained(), arch='mlp', dataset='digits', sigma=0.25)

@pytest.fixture(scope='module')
def certified(checkpoint, tmp_path_factory):
    "An uninterrupted single-process certify run: the reference the other runs must reproduce."
    out = tmp_path_factory.mktemp('reference')/'certify.tsv'
    done = run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS)
    assert f'{len(EXAMPLES)}/{len(EXAMPLES)}' in done.stderr      # the progress bar reached the end
    return out

def python_run(checkpoint, outfile, **kwargs):
    "The same run through the Python API."
    model, _ = load_model(checkpoint)
    return certify_dataset(Smooth(model, 10, 0.25), get_dataset('digits', 'test'), outfile, progress=False, **kwargs)

def test_certify_log(certified, checkpoint):
    lines = certified.read_text().splitlines()
    assert lines[0].split('\t') == list(CERTIFY_COLUMNS)         # the header on line 1, the reference columns first
    log = read_log(certified)                                     # the analysis code reads it
    assert log.idx.tolist() == EXAMPLES
    assert (log.n == 1000).all() and (log.n0 == 100).all()
    assert (log.radius[log.predict != -1] > 0).all() and (log.radius[log.predict == -1] == 0).all()
    for text, radius in zip(pd.read_csv(certified, sep='\t', dtype=str).radius, log.radius):
        assert float(text) == radius and (radius == 0 or len(text) > 5)   # full precision, not 3 digits
    assert clean_accuracy(log) > 0.5
    assert certified_accuracy(log, 0.0) >= certified_accuracy(log, 0.25) >= certified_accuracy(log, 0.5)
    s = json.loads(settings_path(certified).read_text())
    assert (s['n0'], s['n'], s['alpha'], s['sigma'], s['seed']) == (100, 1000, 0.001, 0.25, 3)
    assert (s['batch_size'], s['noise_chunks']) == (10_000, [100, 1000])
    assert s['checkpoint'] == str(Path(checkpoint).resolve()) and len(s['checkpoint_sha256']) == 64
    assert s['units'].startswith('[0, 1] pixels')                # what the radii are measured in
    assert log.attrs['settings']['N'] == 1000
    assert run('rs_analyze', certified).returncode == 0          # the summary command reads it unchanged

def test_python_api_gives_the_same_rows(certified, checkpoint, tmp_path):
    python_run(checkpoint, tmp_path/'py.tsv', n0=100, n=1000, batch_size=10_000, skip=15, seed=3, limit=8)
    pd.testing.assert_frame_equal(without_time(tmp_path/'py.tsv'), without_time(certified).iloc[:8])

def test_predict_log(checkpoint, tmp_path):
    out = tmp_path/'predict.tsv'
    run('rs_predict', 'digits', checkpoint, 0.25, out, '--N', 100, '--batch', 1000, '--skip', 15, '--max', 12,
        '--quiet')
    assert out.read_text().splitlines()[0].split('\t') == list(PREDICT_COLUMNS)
    log = read_log(out)
    assert log.idx.tolist() == EXAMPLES[:12]                        # --max counts examples, not dataset indices
    assert ((log.predict == -1) == (log.pvalue > 0.001)).all()
    assert ((log.nA + log.nB) <= 100).all()

def test_resume_after_kill(checkpoint, tmp_path):
    "kill -9 a run part-way, tear its last line, run the same command again: the log equals an uninterrupted run's."
    settings = ['--N0', 100, '--N', 5000, '--batch', 1000, '--skip', 15, '--max', 16, '--quiet']
    killed = tmp_path/'killed.tsv'
    process = subprocess.Popen(command_line('rs_certify', 'digits', checkpoint, 0.25, killed, *settings), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    python_run(checkpoint, tmp_path/'uninterrupted.tsv', n0=100, n=5000, batch_size=1000, skip=15, limit=16)
    pd.testing.assert_frame_equal(without_time(killed), without_time(tmp_path/'uninterrupted.tsv'))
    assert read_log(killed).idx.tolist() == EXAMPLES[:16]             # every index exactly once, in order

def test_larger_max_extends_a_finished_run(certified, checkpoint, tmp_path):
    "Appending examples cannot change earlier rows: each example's noise depends on (seed, index) only."
    out = tmp_path/'extended.tsv'
    run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS, '--max', 4, '--quiet')
    first = out.read_text()
    run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS, '--max', 10, '--quiet')
    assert out.read_text().startswith(first)
    pd.testing.assert_frame_equal(without_time(out), without_time(certified).iloc[:10])
    assert json.loads(settings_path(out).read_text())['limit'] == 10

def test_batch_that_keeps_the_noise_continues_a_run(certified, checkpoint, tmp_path):
    "--batch 10000 and 20000 draw the same noise at N0 = 100, N = 1000 (chunks of 100, then 1000): allowed."
    out = tmp_path/'rebatched.tsv'
    run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS, '--max', 3, '--quiet')
    run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS, '--max', 6, '--batch', 20_000, '--quiet')
    pd.testing.assert_frame_equal(without_time(out), without_time(certified).iloc[:6])

def test_threads_do_not_change_rows(certified, checkpoint, tmp_path):
    out = tmp_path/'threads.tsv'
    run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS, '--max', 3, '--threads', 2, '--quiet')
    pd.testing.assert_frame_equal(without_time(out), without_time(certified).iloc[:3])

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
    (['--N', 2000], '--N 1000 there, --N 2000 now'),                  # named as the user gave it: the flag
    (['--batch', 500], '--batch 10000 there, --batch 500 now (each'),  # other noise: says so
    (['--skip', 0], 'skip'),                                          # (the other range checks: nbs/15_cli.ipynb)
])
def test_bad_settings_are_refused(certified, checkpoint, args, message):
    before = certified.read_text()
    done = run('rs_certify', 'digits', checkpoint, 0.25, certified, *SETTINGS, *args, check=False)
    assert done.returncode == 1 and message in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert certified.read_text() == before

def test_bad_inputs_fail_before_sampling(certified, checkpoint, tmp_path):
    (tmp_path/'afile').write_text('a regular file')
    cases = [(['rs_certify', 'digits', tmp_path/'missing.pth', 0.25, tmp_path/'a.tsv'], 'does not exist'),
             (['rs_certify', 'synthetic', checkpoint, 0.25, tmp_path/'b.tsv'], 'synthetic'),  # model/data mismatch
             (['rs_predict', 'digits', checkpoint, 0.25, certified, '--N', 100],
              'rs_certify there, rs_predict now'),                                           # a certify log
             (['rs_certify', 'digits', checkpoint, 0.25, tmp_path/'afile'/'out.tsv'], 'afile is a file'),
             (['rs_predict', 'digits', checkpoint, 0.25, tmp_path/'afile'/'out.tsv'], 'afile is a file'),
             (['rs_certify', 'digits', checkpoint, 0.25, '/proc/no_such/out.tsv'], 'cannot write outfile'),
             (['rs_certify', 'digits', checkpoint, 0.25, '/proc/out.tsv', '--N', 100], '/proc/out.tsv'),
             (['rs_certify', 'digits', checkpoint, 0.25, tmp_path], 'is a folder')]
    for args, message in cases:
        done = run(*args, check=False)
        assert done.returncode == 1 and message in done.stderr and 'Traceback' not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path/'a.tsv').exists() and not (tmp_path/'b.tsv').exists()

def test_radius_beyond_the_budget_names_the_flags(checkpoint, tmp_path):
    "Issue 21: a radius --N draws can never certify is refused naming --N; Python's `certify_dataset` says n."
    done = run('rs_certify', 'digits', checkpoint, 0.25, tmp_path/'r.tsv', '--N', 1000, '--radius', 5, check=False)
    assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr
    assert 'rs_certify: error: --radius 5.0 can never be certified with --N 1000 at --alpha 0.001' in done.stderr
    assert done.stderr.strip().endswith('raise --N or sigma'), done.stderr
    with pytest.raises(ValueError, match=r'^radius 5.0 can never be certified with n=1000 at alpha=0.001: .*'
                                         r'raise n or sigma$'):
        python_run(checkpoint, tmp_path/'p.tsv', n=1000, radius=5.0)
    assert not (tmp_path/'r.tsv').exists() and not (tmp_path/'p.tsv').exists()

def test_help_and_argument_errors_do_not_import_torch(tmp_path):
    probe = ("import sys\nfrom randsmooth.cli import rs_certify\nsys.argv = ['rs_certify'] + sys.argv[1:]\n"
             "try: rs_certify()\nexcept SystemExit as e: print(e.code == 0 or e.code, 'torch' in sys.modules)")
    for args, answer in [(['--help'], 'True False'), (['digits', 'x.pth', '0.25', 'o.tsv', '--N', '0'], 'False')]:
        done = subprocess.run([sys.executable, '-c', probe, *args], capture_output=True, text=True, cwd=tmp_path)
        assert done.stdout.strip().endswith(answer), done.stdout + done.stderr

def test_ctrl_c_ends_with_one_line_and_resumes(certified, checkpoint, tmp_path):
    "Issue 25-2: Ctrl-C says how far the run got and how to resume, in one line, exit status 130 (no traceback)."
    settings = ['--N0', 100, '--N', 5000, '--batch', 1000, '--skip', 15, '--max', 16, '--quiet']
    out = tmp_path/'interrupted.tsv'
    process = subprocess.Popen(command_line('rs_certify', 'digits', checkpoint, 0.25, out, *settings), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(read_log_rows(out, CERTIFY_COLUMNS)) < 3:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, 'the run wrote no rows'
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    done = len(read_log_rows(out, CERTIFY_COLUMNS))
    assert process.returncode == 130, stderr
    assert stderr.strip() == (f'rs_certify: interrupted after {done} of 16 rows; '
                              'run the same command again to resume'), stderr
    assert 3 <= done < 16
    run('rs_certify', 'digits', checkpoint, 0.25, out, *settings)
    assert read_log(out).idx.tolist() == EXAMPLES[:16]

def test_settings_file_without_log_does_not_block(certified, checkpoint, tmp_path):
    "Issue 25-1: an orphan OUTFILE.json (a run that died before its first row) protects no rows: a new run goes ahead."
    out = tmp_path/'orphan.tsv'
    settings_path(out).write_text(json.dumps({'command': 'certify', 'n': 5, 'checkpoint': 'another.onnx'}))
    out.write_text('\t'.join(CERTIFY_COLUMNS) + '\n')                # and a header-only log
    run('rs_certify', 'digits', checkpoint, 0.25, out, *SETTINGS, '--max', 3, '--quiet')
    pd.testing.assert_frame_equal(without_time(out), without_time(certified).iloc[:3])
    assert json.loads(settings_path(out).read_text())['n'] == 1000

def test_a_run_that_fails_before_its_first_row_leaves_no_file(checkpoint, tmp_path):
    "Issue 25-1: a model that fails on the run's batches leaves no header-only log and no orphan settings file."
    class Failing(torch.nn.Module):
        def __init__(self, model): super().__init__(); self.model = model
        def forward(self, z):
            if len(z) > 1: raise RuntimeError('only one input at a time')
            return self.model(z)
    model, _ = load_model(checkpoint)
    with pytest.raises(RuntimeError, match='one input'):
        certify_dataset(Smooth(Failing(model), 10, 0.25), get_dataset('digits', 'test'), tmp_path/'f.tsv',
                        n0=100, n=1000, limit=2, progress=False)
    assert list(tmp_path.iterdir()) == []

def test_fixed_batch_export_is_used_with_a_note(certified, checkpoint, tmp_path):
    "Issue 25-1: a torch.export program with batch size fixed at 1 certifies (batches cut to 1), saying so."
    model, _ = load_model(checkpoint)
    x = get_dataset('digits', 'test')[0][0]
    program = tmp_path/'fixed.pt2'
    torch.export.save(torch.export.export(model, (x[None],)), program)
    out = tmp_path/'fixed.tsv'
    done = run('rs_certify', 'digits', program, 0.25, out, *SETTINGS, '--max', 3, '--quiet')
    assert 'takes batches of exactly 1 input ' in done.stderr and 'Traceback' not in done.stderr, done.stderr
    pd.testing.assert_frame_equal(without_time(out), without_time(certified).iloc[:3])

def test_every_label_is_checked_and_class_names_recorded(certified, checkpoint, tmp_path):
    "Issue 20-B: a row labelled -1 anywhere is refused before any work (it would be logged correct = 1 on abstaining)."
    model, _ = load_model(checkpoint)
    data = list(get_dataset('digits', 'test'))[:30]
    data[17] = (data[17][0], -1)
    with pytest.raises(ValueError, match=r'data\[17\] has label -1'):
        certify_dataset(Smooth(model, 10, 0.25), data, tmp_path/'bad.tsv', n0=100, n=1000, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert json.loads(settings_path(certified).read_text())['classes'] == [str(i) for i in range(10)]

def test_checkpoint_classes_must_be_the_data_classes(tmp_path):
    "Issue 20-B: a checkpoint trained on other class names does not certify this data."
    path = save_checkpoint(tmp_path/'zoo.pth.tar', briefly_trained(steps=1), arch='mlp', dataset='digits', sigma=0.25,
                           classes=[f'animal{i}' for i in range(10)])
    done = run('rs_certify', 'digits', path, 0.25, tmp_path/'c.tsv', *SETTINGS, check=False)
    assert done.returncode == 1 and 'animal0' in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert not (tmp_path/'c.tsv').exists() and not settings_path(tmp_path/'c.tsv').exists()

def test_resume_with_another_classifier_is_refused(certified, checkpoint, tmp_path):
    "Issue 20-E: the same checkpoint bytes are not needed to tell classifiers apart: a module with the same weights."
    model, _ = load_model(checkpoint)
    log = tmp_path/'mixed.tsv'
    python_run(checkpoint, log, n0=100, n=1000, batch_size=10_000, skip=15, seed=3, limit=2)
    tanh = copy.deepcopy(model)                                       # the same weights, tanh for ReLU
    for i, layer in enumerate(tanh[1]):
        if isinstance(layer, torch.nn.ReLU): tanh[1][i] = torch.nn.Tanh()
    assert model_fingerprint(tanh) == model_fingerprint(model)
    with pytest.raises(ValueError, match='architecture'):
        certify_dataset(Smooth(tanh, 10, 0.25), get_dataset('digits', 'test'), log, n0=100, n=1000,
                        batch_size=10_000, skip=15, seed=3, limit=4, progress=False)
    with pytest.raises(ValueError, match=r"Smooth\(amp=None\) there, Smooth\(amp='bf16'\) now"):
        certify_dataset(Smooth(model, 10, 0.25, amp='bf16'), get_dataset('digits', 'test'), log, n0=100, n=1000,
                        batch_size=10_000, skip=15, seed=3, limit=4, progress=False)

def test_commands_sample_an_exact_fast_copy_and_say_so(certified, checkpoint, tmp_path):
    "Issue 24: the commands sample the exact fast copy by default, say so in the first line and record it."
    s = json.loads(settings_path(certified).read_text())
    assert (s['fast']['fast'], s['fast']['relu_in_place'], s['fast']['compile']) == (True, True, False)
    done = run('rs_predict', 'digits', checkpoint, 0.25, tmp_path/'p.tsv', '--N', 100, '--max', 2)
    first = done.stderr.splitlines()[0]
    assert first.startswith('rs_predict: sampling an exact copy of checkpoint.pth.tar (ReLUs in place'), first
    out = tmp_path/'as_loaded.tsv'                                    # turned off: the model as loaded
    settings = CertifySettings('digits', str(checkpoint), 0.25, str(out), n0=100, n=1000, batch_size=10_000,
                               skip=15, seed=3, limit=3, quiet=True, fast=False)
    settings.check()
    certify_command(settings)
    assert json.loads(settings_path(out).read_text())['fast'] == {'fast': False, 'why': 'fast=False'}
    pd.testing.assert_frame_equal(without_time(out), without_time(certified).iloc[:3])

def test_fast_copy_keeps_amp_and_eval_mode(checkpoint):
    "Issue 24: the fast copy is sampled as the model is: `amp` (bf16 certifies the bf16 function), eval_mode."
    from randsmooth.certify import command_fast_path
    model, _ = load_model(checkpoint)
    x = get_dataset('digits', 'test')[0][0]
    fast, what = command_fast_path(Smooth(model, 10, 0.25, amp='bf16', eval_mode=False), x, 2000, 1000)
    assert (what['fast'], what['amp'], fast.amp, fast.eval_mode) == (True, 'bf16', 'bf16', False), what
    assert fast.channels_last == what['channels_last']
