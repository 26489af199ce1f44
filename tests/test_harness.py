"""The ground-truth harness (nbs/16_ground_truth.ipynb) over every certifying path of the library.

Each standard linear case (`randsmooth.harness.linear_cases`) is certified by every path — the Python API, the
dataset runner (packed, unpacked, resumed, sharded), `rs_certify` on the model in each file format, the sequential
modes, Bonferroni, re-analysis, the fast copy, NumPy classifiers and the denoised export — and each path must
(1) pass `check_certificates` (no more wrong certificates than alpha allows; the truth is exact), and (2) give rows
identical to its equivalent path's. Negative cases (batch-coupled models, mislabelled data, a fold-unsafe model) must
be refused, or (a train() override that keeps batch norm adapting) sampled in eval mode all the same. Large
simulations run only with RS_SLOW=1."""
import importlib.util, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm
from torch import nn

import randsmooth.adaptive  # attaches Smooth.certify_at_radius and Smooth.certify_adaptive (@patch)
import randsmooth.smooth as smooth_module
from randsmooth.certify import certify_dataset
from randsmooth.logs import part_paths, read_log, settings_path
from randsmooth.harness import check_certificates, failure_budget, linear_cases, linear_module
from randsmooth.model_files import save_checkpoint
from randsmooth.reanalysis import certified_accuracy_bound, reanalyze
from randsmooth.smooth import NumpyClassifier, Smooth, example_generator

SamplingContractError = getattr(smooth_module, 'SamplingContractError', None)   # planned (engineer A)
BIN = Path(sys.executable).parent
HAS_ONNX = importlib.util.find_spec('onnxruntime') is not None and importlib.util.find_spec('onnx') is not None
HAS_SAFETENSORS = importlib.util.find_spec('safetensors') is not None
slow = pytest.mark.skipif(os.environ.get('RS_SLOW') != '1', reason='large simulation: set RS_SLOW=1')

ALPHA, N0, N, BATCH, SEED = 0.001, 64, 1000, 4096, 5
ROW = ['idx', 'label', 'predict', 'radius', 'correct', 'n0', 'n', 'nA', 'nB', 'pA_lower']   # all but time
CASES = linear_cases()
IDS = ['two2d', 'two10d', 'three', 'four_images']

@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)

def rows_of(log):
    log = read_log(log) if isinstance(log, (str, Path)) else log
    return log[[c for c in ROW if c in log.columns]].reset_index(drop=True)

def check_log(log, case, alpha=ALPHA):
    "The harness check on a log's rows."
    df = rows_of(log)
    return check_certificates(df.predict, df.radius, case, alpha, idx=df.idx)

def smooth_of(case, model=None): return Smooth(linear_module(case) if model is None else model, case.num_classes,
                                              case.sigma)

def run_dataset(case, out, model=None, **kwargs):
    settings = dict(n0=N0, n=N, alpha=ALPHA, batch_size=BATCH, seed=SEED, progress=False) | kwargs
    return certify_dataset(smooth_of(case, model), case.dataset(), out, **settings)

def results_frame(case, results):
    "Rows like a log's (without time) from `CertifyResult`s of the points in order."
    return pd.DataFrame(dict(
        idx=range(len(results)), label=case.labels, predict=[int(r.prediction) for r in results],
        radius=[float(r.radius) if r.prediction != -1 else 0.0 for r in results],
        correct=[int(r.prediction == y) for r, y in zip(results, case.labels)],
        n0=[r.n0 for r in results], n=[r.n for r in results], nA=[r.nA for r in results],
        nB=[r.nB for r in results], pA_lower=[float(r.pA_lower) for r in results]))

def assert_same_rows(got, expected):
    pd.testing.assert_frame_equal(rows_of(got), rows_of(expected), check_dtype=False, check_exact=True)

@pytest.fixture(scope='module', params=range(len(CASES)), ids=IDS)
def case(request): return CASES[request.param]

@pytest.fixture(scope='module')
def reference(case, tmp_path_factory):
    "certify_dataset, packed ('auto'): the rows every equivalent path must reproduce."
    log = run_dataset(case, tmp_path_factory.mktemp('reference')/'certify.tsv')
    check_log(log, case)
    assert (log.predict != -1).sum() >= len(case.points) // 2        # the cases do certify
    return log

# --- the Python API and the dataset runner ------------------------------------------------------------------------

def test_python_paths_are_one_path(case, reference, tmp_path):
    "Smooth.certify (one point, its own generator), certify_many and certify_dataset unpacked: identical rows."
    s, xs = smooth_of(case), torch.from_numpy(case.points)
    alone = [s.certify_detailed(x, N0, N, ALPHA, BATCH, example_generator(SEED, i)) for i, x in enumerate(xs)]
    assert_same_rows(results_frame(case, alone), reference)
    assert_same_rows(results_frame(case, s.certify_many(xs, N0, N, ALPHA, BATCH, seed=SEED)), reference)
    assert_same_rows(run_dataset(case, tmp_path/'unpacked.tsv', images_per_batch=1), reference)
    assert [tuple(s.certify(xs[2], N0, N, ALPHA, BATCH, example_generator(SEED, 2)))] == \
           [(reference.predict[2], reference.radius[2])]

def test_resumed_run_equals_uninterrupted(case, reference, tmp_path):
    out = tmp_path/'resumed.tsv'
    run_dataset(case, out, limit=len(case.points) // 2 + 1)
    lines = out.read_text()
    with open(out, 'w') as f: f.write(lines[:-7])                       # and a torn last line
    assert_same_rows(run_dataset(case, out), reference)

def test_bonferroni(case, tmp_path):
    log = run_dataset(case, tmp_path/'bonferroni.tsv', bound='bonferroni')
    check_log(log, case)
    s = smooth_of(case)
    many = s.certify_many(torch.from_numpy(case.points), N0, N, ALPHA, BATCH, seed=SEED, bound='bonferroni')
    assert_same_rows(results_frame(case, many), log)

def test_certify_at_radius(case, tmp_path):
    r = 0.5 * float(np.median(case.true_radius))      # true for some points, false for others
    log = run_dataset(case, tmp_path/'radius.tsv', radius=r, n=4000)
    report = check_log(log, case)
    assert report['certified'] >= 1 and (log.radius[log.predict != -1] == r).all()
    s = smooth_of(case)
    for i, x in enumerate(torch.from_numpy(case.points)):
        c = s.certify_at_radius(x, r, N0, 4000, ALPHA, BATCH, example_generator(SEED, i))
        assert (c.certified, c.n, c.nA) == (log.predict[i] != -1, log.n[i], log.nA[i])
        if c.certified: assert c.prediction == log.predict[i]

def test_adaptive(case, tmp_path):
    out = tmp_path/'adaptive.tsv'
    log = run_dataset(case, out, adaptive=True, n=8000)
    check_log(log, case)
    again = reanalyze(log)                           # re-read with its own (sequential) statistics
    assert (again.radius <= log.radius).all()
    check_log(again, case)
    settings_path(out).unlink()                      # without its settings file: never re-decided as fixed-n
    try: bare = reanalyze(read_log(out))
    except ValueError: pass
    else: assert (bare.radius <= log.radius).all(), 'an adaptive log re-analysed without its settings raised radii'
    s = smooth_of(case)
    for i, x in enumerate(torch.from_numpy(case.points)):
        a = s.certify_adaptive(x, N0, 8000, ALPHA, BATCH, generator=example_generator(SEED, i))
        assert (a.prediction, a.radius, a.n, a.nA) == (log.predict[i], log.radius[i], log.n[i], log.nA[i])

def test_reanalyze(case, reference):
    same = reanalyze(reference)            # its own procedure: the log itself (abstentions' pA_lower aside)
    keep = ['idx', 'predict', 'radius', 'correct', 'n', 'nA']
    assert_same_rows(same[keep], reference[keep])
    certified = reference.predict != -1
    assert (same.pA_lower[certified] == reference.pA_lower[certified]).all()
    check_log(reanalyze(reference, alpha=0.01), case, alpha=0.01)
    looser = reanalyze(reference, alpha=0.01)
    assert (looser.radius >= reference.radius).all()
    bonf = reanalyze(reference, bound='bonferroni')
    check_log(bonf, case)
    what_if = reanalyze(reference, n=100 * N)        # pretending 100 times the draws: marked, never "valid"
    assert what_if.attrs.get('what_if'), 'a what-if re-analysis is not marked as such'
    with pytest.raises(ValueError, match='what-if'): certified_accuracy_bound(what_if, 0.1)

def test_inference_copy(case, reference, tmp_path):
    from randsmooth.fast import inference_copy
    model = linear_module(case)
    probe = torch.from_numpy(case.points) + case.sigma * torch.randn(len(case.points), *case.input_shape)
    copy = inference_copy(model, probe)
    assert_same_rows(run_dataset(case, tmp_path/'copy.tsv', model=copy), reference)

def test_numpy_classifier(case, reference, tmp_path):
    "A NumPy function of the same classifier (float64 scores), and one returning labels: the same rows."
    lin = linear_module(case)[1][1]
    W, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
    scores = NumpyClassifier(lambda a: a.astype(np.float64) @ W.T + b)
    assert_same_rows(run_dataset(case, tmp_path/'numpy.tsv', model=scores), reference)
    labels = NumpyClassifier(lambda a: (a.astype(np.float64) @ W.T + b).argmax(1), num_classes=case.num_classes)
    assert_same_rows(run_dataset(case, tmp_path/'labels.tsv', model=labels), reference)

# --- rs_certify on the model saved in every format -----------------------------------------------------------------

def rs_certify(*args):
    "The command, in this process (`sys.argv` as the console script would see it); its error text or None."
    from randsmooth.cli import rs_certify as command
    argv = sys.argv
    sys.argv = ['rs_certify', *map(str, args)]
    try: command()
    except SystemExit as e:
        if e.code not in (None, 0): return str(e.code)
    finally: sys.argv = argv
    return None

def write_npz(case, path, classes=None):
    arrays = dict(x=case.points, y=case.labels) | ({} if classes is None else dict(classes=np.array(classes)))
    np.savez(path, **arrays)
    return path

def data_info(path):
    from randsmooth.data import load_dataset
    return load_dataset(str(path))[1]

def write_model(fmt, case, folder, data):
    "The case's classifier saved in format `fmt`: (path, extra rs_certify arguments)."
    model, example = linear_module(case), torch.from_numpy(case.points[:2])
    if fmt == 'checkpoint':
        return save_checkpoint(folder/'model.pth.tar', model, arch='linear', dataset=data_info(data),
                               sigma=case.sigma), []
    if fmt == 'state_dict': torch.save(model.state_dict(), folder/'weights.pth'); return folder/'weights.pth', \
        ['--arch', 'linear']
    if fmt == 'safetensors':
        from safetensors.torch import save_file
        save_file(model.state_dict(), str(folder/'weights.safetensors'))
        return folder/'weights.safetensors', ['--arch', 'linear']
    if fmt == 'torchscript':
        torch.jit.trace(model, example).save(str(folder/'model.ts.pt')); return folder/'model.ts.pt', []
    if fmt == 'torch.export':
        batch = torch.export.Dim('batch', min=1, max=1 << 20)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(folder/'model.pt2')); return folder/'model.pt2', []
    if fmt == 'onnx':
        torch.onnx.export(model, (example,), str(folder/'model.onnx'), input_names=['x'], output_names=['scores'],
                          dynamic_axes={'x': {0: 'batch'}, 'scores': {0: 'batch'}}, dynamo=False)
        return folder/'model.onnx', []
    raise ValueError(fmt)

FORMATS = ['checkpoint', 'state_dict', 'torchscript', 'torch.export',
           pytest.param('onnx', marks=pytest.mark.skipif(not HAS_ONNX, reason='onnx/onnxruntime not installed')),
           pytest.param('safetensors', marks=pytest.mark.skipif(not HAS_SAFETENSORS, reason='no safetensors'))]
COMMAND = ['--N0', N0, '--N', N, '--alpha', ALPHA, '--batch', BATCH, '--seed', SEED, '--quiet']

@pytest.mark.parametrize('fmt', FORMATS)
def test_rs_certify_every_format(fmt, case, reference, tmp_path):
    data = write_npz(case, tmp_path/'data.npz')
    path, extra = write_model(fmt, case, tmp_path, data)
    out = tmp_path/f'{fmt}.tsv'
    assert rs_certify(data, path, case.sigma, out, *COMMAND, *extra) is None
    check_log(out, case)
    got = rows_of(out)
    if fmt == 'onnx':        # onnxruntime's kernels may round a draw differently near a boundary
        assert (got.predict == reference.predict).mean() >= 0.9 and (got.nA - reference.nA).abs().max() <= 2
    else: assert_same_rows(got, reference)

def test_sharded_rs_certify_equals_single_process(tmp_path):
    "torchrun with 2 processes (the command as installed): the merged log equals the single-process rows."
    case = CASES[2]
    data = write_npz(case, tmp_path/'data.npz')
    path, _ = write_model('checkpoint', case, tmp_path, data)
    out = tmp_path/'sharded.tsv'
    env = os.environ | {'OMP_NUM_THREADS': '1'}
    done = subprocess.run([str(BIN/'torchrun'), '--standalone', '--nproc_per_node', '2', '--', str(BIN/'rs_certify'),
                           str(data), str(path), str(case.sigma), str(out), *map(str, COMMAND)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert part_paths(out) == []
    assert_same_rows(out, run_dataset(case, tmp_path/'single.tsv'))
    check_log(out, case)

def test_denoised_export_with_identity_denoiser(tmp_path):
    "f ∘ D with D = identity, exported by export_denoised and certified by rs_certify: the rows of f itself."
    from randsmooth.methods import Denoiser, export_denoised
    from randsmooth.models import NormalizeLayer
    case = CASES[3]                                             # the denoiser needs images
    data = write_npz(case, tmp_path/'data.npz')
    classifier, _ = write_model('checkpoint', case, tmp_path, data)
    den = Denoiser(case.input_shape[0])          # a fresh one is the identity: its residual's last conv is zero
    with torch.no_grad():
        den.body[-1].weight.zero_(); den.body[-1].bias.zero_()
        if hasattr(den, 'skip'): den.skip.weight.copy_(torch.eye(case.input_shape[0])[:, :, None, None])
        if hasattr(den, 'skip'): den.skip.bias.zero_()
    identity = nn.Sequential(NormalizeLayer([0.0], [1.0]), den).eval()
    x = torch.from_numpy(case.points)
    assert torch.equal(identity(x), x)
    denoiser = save_checkpoint(tmp_path/'denoiser.pth.tar', identity, arch='randsmooth.methods:denoiser',
                               dataset=data_info(data), sigma=case.sigma)
    exported = export_denoised(denoiser, classifier, tmp_path/'denoised.pt', case.input_shape)
    out = tmp_path/'denoised.tsv'
    assert rs_certify(data, exported, case.sigma, out, *COMMAND) is None
    check_log(out, case)
    assert_same_rows(out, run_dataset(case, tmp_path/'plain.tsv'))

# --- the statistical check at CI size, and at full size (RS_SLOW=1) ------------------------------------------------

def certificates(case, i, m, alpha, n=N, seed=SEED, bound='cohen'):
    "m independent certificates of point i (certify_many: example j draws from example_generator(seed, j))."
    point = case.repeated(i, m)
    rows = smooth_of(point).certify_many(torch.from_numpy(point.points), N0, n, alpha, 1 << 16, seed=seed,
                                         bound=bound)
    return point, rows

def test_error_rate_ci_size_catches_a_wrong_method():
    "4,000 certificates of one point at alpha = 0.05: CERTIFY passes; the point estimate, 2 or 10 alpha fail."
    point, rows = certificates(CASES[0], 8, 4000, 0.05)
    report = check_certificates([r.prediction for r in rows], [r.radius for r in rows], point, 0.05)
    assert report['certified'] > 3900
    estimate = point.sigma * norm.ppf(np.array([r.nA / r.n for r in rows]))    # the point estimate of pA
    with pytest.raises(AssertionError, match='wrong certificates'):
        check_certificates([r.candidate for r in rows], estimate, point, 0.05)
    for wrong_alpha in (0.5, 0.1):                # alpha ten times, or only twice, what is claimed
        _, loose = certificates(CASES[0], 8, 4000, wrong_alpha)
        with pytest.raises(AssertionError, match='wrong certificates'):
            check_certificates([r.prediction for r in loose], [r.radius for r in loose], point, 0.05)

def test_sequential_error_rates_ci_size():
    "300 adaptive certificates and 300 tests at a radius 5% above the truth, at alpha = 0.05: within budget."
    case, alpha = CASES[0], 0.05
    point = case.repeated(8, 300)
    s, xs = smooth_of(point), torch.from_numpy(point.points)
    adaptive = [s.certify_adaptive(x, N0, 4000, alpha, 1 << 14, generator=example_generator(SEED, j))
                for j, x in enumerate(xs)]
    report = check_certificates([a.prediction for a in adaptive], [a.radius for a in adaptive], point, alpha)
    assert report['certified'] > 270
    r = 1.05 * float(point.true_radius[0])
    at = [s.certify_at_radius(x, r, N0, 8000, alpha, 1 << 14, example_generator(SEED, j)) for j, x in enumerate(xs)]
    assert sum(c.certified for c in at) <= failure_budget(len(at), alpha)
    below = [s.certify_at_radius(x, 0.8 * r, N0, 8000, alpha, 1 << 14, example_generator(SEED, j))
             for j, x in enumerate(xs[:100])]
    assert sum(c.certified for c in below) > 50          # the test has power where the radius holds

@slow
@pytest.mark.parametrize('bound', ['cohen', 'bonferroni'])
def test_error_rate_full_size(bound):
    "100,000 certificates at alpha = 0.01 on a two- and a three-class point: within the binomial budget."
    for case, i in [(CASES[0], 8), (CASES[2], 7)]:
        point, rows = certificates(case, i, 100_000, 0.01, bound=bound)
        check_certificates([r.prediction for r in rows], [r.radius for r in rows], point, 0.01)

@slow
def test_error_rate_sequential_modes():
    "10,000 adaptive certificates, and 10,000 at a radius just above the truth: wrong no more than alpha allows."
    case, i, m, alpha = CASES[0], 8, 10_000, 0.01
    point = case.repeated(i, m)
    s, xs = smooth_of(point), torch.from_numpy(point.points)
    adaptive = [s.certify_adaptive(x, N0, 4000, alpha, 1 << 14, generator=example_generator(SEED, j))
                for j, x in enumerate(xs)]
    check_certificates([a.prediction for a in adaptive], [a.radius for a in adaptive], point, alpha)
    r = 1.02 * float(point.true_radius[0])
    at = [s.certify_at_radius(x, r, N0, 8000, alpha, 1 << 14, example_generator(SEED, j))
          for j, x in enumerate(xs)]
    certified = np.array([c.certified for c in at])
    assert certified.sum() <= failure_budget(m, alpha), certified.sum()

# --- negative cases: what must be refused --------------------------------------------------------------------------

def contract_error():
    assert SamplingContractError is not None, "randsmooth.smooth.SamplingContractError does not exist (yet)"
    return SamplingContractError

def batch_coupled(case):
    "BatchNorm without running statistics in front of the linear layer: each draw depends on its batch partners."
    d = int(np.prod(case.input_shape))
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(d, affine=False, track_running_stats=False),
                         linear_module(case)[1][1]).eval()

def test_batch_coupled_model_is_refused(tmp_path):
    case = CASES[0]
    s, xs = Smooth(batch_coupled(case), 2, case.sigma), torch.from_numpy(case.points)
    error = contract_error()
    with pytest.raises(error): s.certify(xs[0], N0, N, ALPHA, BATCH, seed=0)
    with pytest.raises(error): s.certify_many(xs, N0, N, ALPHA, BATCH, seed=0)
    with pytest.raises(error): s.predict(xs[0], N, ALPHA, BATCH, seed=0)
    with pytest.raises(error): certify_dataset(s, case.dataset(), tmp_path/'coupled.tsv', n0=N0, n=N, progress=False)
    assert not (tmp_path/'coupled.tsv').exists() or len(read_log(tmp_path/'coupled.tsv')) == 0

class TestTimeAdaptation(nn.Module):
    "A model whose train() override keeps its batch norm in training mode (test-time adaptation)."
    __test__ = False
    def __init__(self, case):
        super().__init__()
        self.bn = nn.BatchNorm1d(int(np.prod(case.input_shape)), affine=False)
        with torch.no_grad(): self.bn.running_mean.fill_(0.3); self.bn.running_var.fill_(2.0)
        self.head = linear_module(case)[1]
    def train(self, mode=True):
        super().train(mode)
        self.bn.train(True)            # "always adapt"
        return self
    def forward(self, x): return self.head(self.bn(x.flatten(1)))

def frozen(model):
    "The same function with its batch norm really in eval mode (running statistics): what must be sampled."
    bn = nn.BatchNorm1d(model.bn.num_features, affine=False)
    bn.load_state_dict(model.bn.state_dict())
    return nn.Sequential(nn.Flatten(), bn, model.head).eval()

def test_test_time_adaptation_model_is_sampled_in_eval_mode_or_refused(tmp_path):
    "eval mode verified, not assumed: refused, or sampled with running statistics (rows of the frozen model);"
    "either way its statistics are not overwritten and its modes are restored."
    case = CASES[0]
    model = TestTimeAdaptation(case)
    model.eval()
    assert model.bn.training                                          # the override kept it adapting
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    s, xs = Smooth(model, 2, case.sigma), torch.from_numpy(case.points)
    try:
        rows = s.certify_many(xs, N0, N, ALPHA, BATCH, seed=SEED)
        expected = Smooth(frozen(model), 2, case.sigma).certify_many(xs, N0, N, ALPHA, BATCH, seed=SEED)
        assert [(r.prediction, r.nA, r.nB) for r in rows] == [(r.prediction, r.nA, r.nB) for r in expected]
        log = certify_dataset(s, case.dataset(), tmp_path/'tta.tsv', n0=N0, n=N, batch_size=BATCH, seed=SEED,
                              progress=False)
        assert log.nA.tolist() == [r.nA for r in expected]
    except ValueError as e:
        assert SamplingContractError is not None and isinstance(e, SamplingContractError), e
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # statistics not overwritten
    assert [m.training for m in model.modules()] == flags                          # modes restored

def test_label_minus_one_is_refused(tmp_path):
    "A label -1 anywhere in the data (not just data[0]) is refused before any row is written."
    case = CASES[0]
    data = case.dataset()
    data[3] = (data[3][0], -1)
    with pytest.raises(ValueError, match='label'):
        certify_dataset(smooth_of(case), data, tmp_path/'bad.tsv', n0=N0, n=N, progress=False)
    assert not (tmp_path/'bad.tsv').exists() or len(read_log(tmp_path/'bad.tsv')) == 0

def test_numpy_labels_minus_one_plus_one():
    "An SVM's labels {-1, +1} as class ids: refused without the label space; with classes=[-1, 1], the truth."
    case = CASES[0]
    w, b = case.weights.reshape(-1), case.bias[0]
    svm = lambda a: np.where(a.astype(np.float64) @ w + b > 0, 1, -1)
    xs = torch.from_numpy(case.points)
    with pytest.raises(ValueError):
        Smooth(NumpyClassifier(svm, num_classes=2), 2, case.sigma).certify_many(xs, N0, N, ALPHA, BATCH, seed=SEED)
    labelled = NumpyClassifier(svm, classes=[-1, 1])
    assert list(labelled.classes) == [-1, 1]
    rows = Smooth(labelled, 2, case.sigma).certify_many(xs, N0, N, ALPHA, BATCH, seed=SEED)
    check_certificates([r.prediction for r in rows], [r.radius for r in rows], case, ALPHA)
    reference = smooth_of(case).certify_many(xs, N0, N, ALPHA, BATCH, seed=SEED)
    assert [(r.prediction, r.nA) for r in rows] == [(r.prediction, r.nA) for r in reference]

def test_checkpoint_with_other_class_names_is_refused(tmp_path):
    "A checkpoint trained on cat/dog certifying data of ant/bee: refused, naming both lists."
    case = CASES[0]
    data = write_npz(case, tmp_path/'data.npz', classes=['ant', 'bee'])
    ckpt = save_checkpoint(tmp_path/'model.pth.tar', linear_module(case), arch='linear', dataset=data_info(data),
                           sigma=case.sigma, classes=['cat', 'dog'])
    out = tmp_path/'mismatch.tsv'
    error = rs_certify(data, ckpt, case.sigma, out, *COMMAND)
    assert error is not None and 'cat' in error and 'ant' in error, error
    assert not out.exists()

def test_exported_program_with_training_batch_norm_is_refused(tmp_path):
    "A torch.export program traced with batch norm in training mode normalises with the batch: rs_certify refuses."
    case = CASES[0]
    model = TestTimeAdaptation(case).train()
    batch = torch.export.Dim('batch', min=2, max=1 << 20)
    program = torch.export.export(model, (torch.from_numpy(case.points[:4]),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path/'adapting.pt2'))
    data, out = write_npz(case, tmp_path/'data.npz'), tmp_path/'adapting.tsv'
    error = rs_certify(data, tmp_path/'adapting.pt2', case.sigma, out, *COMMAND)
    assert error is not None and 'batch' in error, error
    assert not out.exists() or len(read_log(out)) == 0

class HandWrittenBatchNorm(nn.Module):
    "F.batch_norm(training=True) written out in forward: no BatchNorm module to see, coupled all the same."
    def __init__(self, case):
        super().__init__()
        self.head = linear_module(case)[1]
    def forward(self, x):
        return self.head(nn.functional.batch_norm(x.flatten(1), None, None, training=True))

@pytest.mark.parametrize('eval_mode', [True, False])
def test_hand_written_batch_norm_is_refused(eval_mode):
    case = CASES[0]
    s = Smooth(HandWrittenBatchNorm(case), 2, case.sigma, eval_mode=eval_mode)
    with pytest.raises(contract_error()):
        s.certify_many(torch.from_numpy(case.points), N0, N, ALPHA, BATCH, seed=SEED)

class ConvUsedTwice(nn.Module):
    "A conv followed by batch norm on one path and used without it on another (which shows only off the probe)."
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.Linear(16, 2)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.5); self.bn.running_var.fill_(4.0)
            self.conv.weight.fill_(1.0); self.conv.bias.fill_(0.0)
    def forward(self, x):
        main = self.head(self.bn(self.conv(x)).flatten(1))
        far = torch.relu(self.conv(x) - 20).flatten(1).sum(1, keepdim=True)    # zero on typical inputs
        return main + 100 * far * torch.tensor([[1.0, -1.0]])

def test_fold_unsafe_model_copy_equals_model_off_the_probe():
    from randsmooth.fast import inference_copy
    torch.manual_seed(0)
    model = ConvUsedTwice().eval()
    probe = 0.5 * torch.randn(64, 1, 4, 4)
    copy = inference_copy(model, probe)
    off = torch.full((3, 1, 4, 4), 30.0) + torch.randn(3, 1, 4, 4)             # where the second use matters
    with torch.no_grad():
        assert torch.allclose(copy(off), model(off), rtol=1e-4, atol=1e-3), (copy(off), model(off))
        assert torch.allclose(copy(probe), model(probe), rtol=1e-4, atol=1e-4)
