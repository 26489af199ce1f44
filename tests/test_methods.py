"""End to end, through the commands: every training method of `randsmooth.methods` trains with
`rs_train --method`, resumes (`--stop_after 1`, then `--resume`; the methods whose loss depends on
the epoch — warm-ups, MACER's deferral — equal an uninterrupted run bit for bit), refuses a changed
method on resume, trains every method under torchrun, and certifies with `rs_certify`; denoised
smoothing trains a denoiser for a fixed classifier and certifies f ∘ D; `export_denoised` refuses
an ONNX classifier (issue 20-C: the trace would record onnxruntime's output as a constant)."""
import os, subprocess, sys
from pathlib import Path
import pytest, torch
from randsmooth.logs import read_log
from randsmooth.methods import export_denoised
from randsmooth.models import get_architecture
from randsmooth.model_files import load_checkpoint, save_checkpoint
from randsmooth.train import CHECKPOINT_NAME, LOG_NAME, read_train_log

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
COMMON = ('--sigma', '0.25', '--epochs', '2', '--batch', '128', '--seed', '1', '--quiet')
METHODS = {'gaussian': None, 'consistency': 'm=2', 'smoothadv': 'm=1,steps=1,warmup=2',
           'macer': 'm=2,defer=1', 'smoothmix': 'm=1,steps=2,warmup=2'}
EPOCH_DEPENDENT = {'smoothadv', 'macer', 'smoothmix'}    # warm-up or deferral: set_epoch

def cmd(name, *args, timeout=300):
    "Run the command `name` of `randsmooth.cli` (what its console script runs) as a process."
    script = (f"import sys; sys.argv[0] = {name!r}; from randsmooth.cli import {name}; "
              f"sys.exit({name}())")
    return subprocess.run([sys.executable, '-c', script, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)

def train(outdir, method, options, *extra, arch='small_cnn'):
    args = ['digits', arch, outdir, *COMMON, '--method', method, *extra]
    if options: args += ['--method_options', options]
    return cmd('rs_train', *args)

def certify(model, outfile, sigma=0.25):
    return cmd('rs_certify', 'digits', model, sigma, outfile, '--N0', '20', '--N', '200',
               '--alpha', '0.01', '--batch', '200', '--skip', '25', '--quiet')

def same_weights(a, b):
    wa, wb = (load_checkpoint(p)[0].state_dict() for p in (a, b))
    return all(torch.equal(wa[k], wb[k]) for k in wa)

@pytest.mark.parametrize('method', list(METHODS))
def test_method_trains_resumes_certifies(tmp_path, method):
    """Stopped after epoch 1 and resumed; the methods whose loss depends on the epoch (SmoothAdv's
    ε and SmoothMix's η warm-up, MACER's deferral) must equal an uninterrupted run bit for bit."""
    options = METHODS[method]
    part = train(tmp_path/'part', method, options, '--stop_after', '1')
    assert part.returncode == 0, part.stderr
    assert read_train_log(tmp_path/'part'/LOG_NAME).epoch.tolist() == [1]
    resumed = train(tmp_path/'part', method, options, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    if method in EPOCH_DEPENDENT:
        assert (full := train(tmp_path/'full', method, options)).returncode == 0, full.stderr
        assert same_weights(tmp_path/'full'/CHECKPOINT_NAME, tmp_path/'part'/CHECKPOINT_NAME)
    settings = torch.load(tmp_path/'part'/CHECKPOINT_NAME, weights_only=True)['state']['settings']
    assert settings['method'] == method
    assert read_train_log(tmp_path/'part'/LOG_NAME).epoch.tolist() == [1, 2]
    r = certify(tmp_path/'part'/CHECKPOINT_NAME, tmp_path/'cert.tsv')
    assert r.returncode == 0, r.stderr
    log = read_log(tmp_path/'cert.tsv')
    assert len(log) == 18 and log.predict.between(-1, 9).all()   # 450 test digits, every 25th
    if method != 'macer': assert log.correct.mean() > 0.3   # MACER learns slower (notebook)

def test_changed_method_refused_on_resume(tmp_path):
    assert train(tmp_path/'run', 'gaussian', None, '--stop_after', '1').returncode == 0
    r = train(tmp_path/'run', 'macer', 'm=2', '--resume')
    assert r.returncode != 0 and 'method' in r.stderr, r.stderr

@pytest.mark.parametrize('method,options,message', [
    ('mixup', None, 'valid methods are gaussian, consistency'),
    ('macer', 'lam=-1', 'lam must be >= 0'),
    ('denoise', None, 'needs classifier'),
    ('consistency', 'copies=3', 'unknown option(s) copies')])
def test_bad_method_refused_before_training(tmp_path, method, options, message):
    r = train(tmp_path/'bad', method, options)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not (tmp_path/'bad'/CHECKPOINT_NAME).exists()

def test_denoised_smoothing_end_to_end(tmp_path):
    """A classifier trained without noise stays fixed; the denoiser in front of it trains, resumes,
    and f ∘ D certifies better than f alone."""
    clf_args = ['digits', 'small_cnn', tmp_path/'clf', '--sigma', '0', '--epochs', '4', '--batch',
                '128', '--quiet']
    assert (r := cmd('rs_train', *clf_args)).returncode == 0, r.stderr
    clf = tmp_path/'clf'/CHECKPOINT_NAME
    before = load_checkpoint(clf)[0].state_dict()
    options = f'classifier={clf},loss=mse'
    den_args = ['--epochs', '8', '--lr', '0.02', '--sigma', '0.5']
    r = train(tmp_path/'den', 'denoise', options, *den_args, '--stop_after', '4',
              arch='randsmooth.methods:denoiser')
    assert r.returncode == 0, r.stderr
    r = train(tmp_path/'den', 'denoise', options, *den_args, '--resume',
              arch='randsmooth.methods:denoiser')
    assert r.returncode == 0, r.stderr
    after = load_checkpoint(clf)[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)     # f is fixed
    composed = export_denoised(tmp_path/'den'/CHECKPOINT_NAME, clf, tmp_path/'fD.pt', (1, 8, 8))
    assert (r := certify(composed, tmp_path/'fD.tsv', 0.5)).returncode == 0, r.stderr
    assert (r := certify(clf, tmp_path/'f.tsv', 0.5)).returncode == 0, r.stderr
    acc = {k: read_log(tmp_path/f'{k}.tsv').correct.mean() for k in ('f', 'fD')}
    assert acc['fD'] > acc['f'] + 0.1, acc     # at σ = 0.5 the noise defeats f alone

DDP_OPTIONS = {**METHODS, 'smoothadv': 'm=1,steps=1,warmup=1', 'macer': 'm=2'}

@pytest.mark.parametrize('method', list(DDP_OPTIONS))
def test_method_under_torchrun(tmp_path, method):
    """Every method trains one epoch under DDP (2 CPU processes, gloo) and writes its checkpoint
    with the method recorded; the attacks' passes bypass DDP, the step syncs."""
    out, options = tmp_path/'ddp', DDP_OPTIONS[method]
    extra = ['--method_options', options] if options else []
    rs_train = [sys.executable, '-c', "import sys; sys.argv[0] = 'rs_train'; "
                "from randsmooth.cli import rs_train; sys.exit(rs_train())"]   # the console script
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                        '--nproc_per_node', '2', '--no-python', *rs_train, 'digits', 'small_cnn',
                        str(out), *COMMON, '--epochs', '1', '--method', method, *extra],
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    log = read_train_log(out/LOG_NAME)
    assert log.epoch.tolist() == [1] and log.train_loss.notna().all()
    settings = torch.load(out/CHECKPOINT_NAME, weights_only=True)['state']['settings']
    assert settings['method'] == method and settings['epochs'] == 1

def test_export_denoised_refuses_onnx_classifier(tmp_path):
    """jit.trace cannot follow onnxruntime: the exported f∘D would answer the tracing input's
    scores for every input. The export is refused before anything is written."""
    pytest.importorskip('onnxruntime')
    den = tmp_path/'den.pth.tar'
    save_checkpoint(den, get_architecture('randsmooth.methods:denoiser', 'digits'),
                    arch='randsmooth.methods:denoiser', dataset='digits', sigma=0.5, epoch=1)
    clf = tmp_path/'clf.onnx'
    torch.onnx.export(get_architecture('small_cnn', 'digits').eval(), (torch.zeros(2, 1, 8, 8),),
                      str(clf), input_names=['x'], output_names=['scores'],
                      dynamic_axes={'x': {0: 'batch'}, 'scores': {0: 'batch'}}, dynamo=False)
    with pytest.raises(ValueError, match='ONNX model run by onnxruntime'):
        export_denoised(den, clf, tmp_path/'fD.pt', (1, 8, 8))
    assert not (tmp_path/'fD.pt').exists()
