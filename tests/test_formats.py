"""Every model format and every data format, end to end: written to disk here, certified by the installed
`rs_certify` (tiny N, run as a process), the logs read back by `rs_analyze`.

Model formats: the same small network (the library's digits MLP, normalisation inside) saved each way must
certify the digits *identically* — the same function sees the same noise — except ONNX, whose kernels may round
differently (its counts must agree within a few draws). Data formats: the same 30 digits written as an image
folder of PNGs, `.npz`, `.pt` and CSV, each certified with a model built for the data `load_dataset` reads."""
import importlib.util, json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from randsmooth.analyze import analyze
from randsmooth.data import get_dataset, load_dataset
from randsmooth.logs import settings_path
from randsmooth.model_files import save_checkpoint
from randsmooth.models import get_architecture

TINY = ['--N0', 10, '--N', 100, '--batch', 100, '--quiet']
COMPARED = ['idx', 'label', 'predict', 'radius', 'correct', 'n0', 'n', 'nA', 'nB', 'pA_lower']
HAS_ONNX = importlib.util.find_spec('onnxruntime') is not None and importlib.util.find_spec('onnx') is not None
HAS_SAFETENSORS = importlib.util.find_spec('safetensors') is not None

def command_line(name, *args):
    """The command `name` of `randsmooth.cli` (what its console script runs), as a process's argument list. The
    working directory is taken off `sys.path`, as it is for an installed console script (`python -c` adds it)."""
    script = (f"import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; sys.argv[0] = {name!r}; "
              f"from randsmooth.cli import {name}; sys.exit({name}())")
    return [sys.executable, '-c', script, *map(str, args)]

def run(*args, cwd=None, ok=True):
    "Run a command from folder `cwd`; it must succeed (or, `ok=False`, fail with a one-line error)."
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'} | {'OMP_NUM_THREADS': '1'}
    done = subprocess.run(command_line(*args), capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    if ok: assert done.returncode == 0, done.stderr
    else: assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done

def rows(path): return pd.read_csv(path, sep='\t')[COMPARED]

@pytest.fixture(scope='module')
def folder(tmp_path_factory): return tmp_path_factory.mktemp('formats')

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    net = get_architecture('mlp', 'digits')
    data = get_dataset('digits', 'train')           # a few steps, so that it certifies some digits
    xs, ys = torch.stack([x for x, _ in data]), torch.tensor([y for _, y in data])
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(150):
        i = torch.randint(len(xs), (64,))
        loss = torch.nn.functional.cross_entropy(net(xs[i] + 0.25 * torch.randn_like(xs[i])), ys[i])
        opt.zero_grad(); loss.backward(); opt.step()
    return net.eval()

def _save_export(model, path):
    batch = torch.export.Dim('batch', min=1, max=1 << 20)
    program = torch.export.export(model, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))

def _save_onnx(model, path):
    torch.onnx.export(model, (torch.zeros(2, 1, 8, 8),), str(path), input_names=['x'], output_names=['scores'],
                      dynamic_axes={'x': {0: 'batch'}, 'scores': {0: 'batch'}}, dynamo=False)

FACTORY = ("import torch\n"
           "def build(num_classes=10, **kwargs):\n"
           "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(),\n"
           "                               torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))\n")

def _write_model(fmt, model, folder):
    "The model saved in format `fmt`: (path, extra command-line arguments)."
    if fmt == 'library': return save_checkpoint(folder/'library.pth.tar', model, arch='mlp', dataset='digits',
                                                sigma=0.25), []
    if fmt == 'reference':   # the reference code's layout: {'epoch', 'arch', 'state_dict', 'optimizer'}, names '1.*'
        weights = {k: v for k, v in model.state_dict().items() if k.startswith('1.')}
        torch.save(dict(epoch=1, arch='mlp', state_dict=weights, optimizer={}), folder/'reference.pth.tar')
        return folder/'reference.pth.tar', ['--arch', 'mlp']
    if fmt == 'torch.export': _save_export(model, folder/'model.pt2'); return folder/'model.pt2', []
    if fmt == 'torchscript':
        torch.jit.trace(model, torch.zeros(2, 1, 8, 8)).save(str(folder/'model.torchscript.pt'))
        return folder/'model.torchscript.pt', []
    if fmt == 'onnx': _save_onnx(model, folder/'model.onnx'); return folder/'model.onnx', []
    if fmt == 'state_dict':
        torch.save(model.state_dict(), folder/'weights.pth'); return folder/'weights.pth', ['--arch', 'mlp']
    if fmt == 'safetensors':
        from safetensors.torch import save_file
        save_file(model.state_dict(), str(folder/'weights.safetensors'))
        return folder/'weights.safetensors', ['--arch', 'mlp']
    if fmt == 'factory':   # the bare network (no normalisation layer) of a user's own package, run from its folder
        (folder/'own_pkg').mkdir(exist_ok=True); (folder/'own_pkg'/'__init__.py').write_text('')
        (folder/'own_pkg'/'nets.py').write_text(FACTORY)
        torch.save(model[1].state_dict(), folder/'own.pth')
        return folder/'own.pth', ['--arch', 'own_pkg.nets:build']
    raise ValueError(fmt)

MODEL_FORMATS = ['library', 'reference', 'torch.export',
                 'torchscript',
                 pytest.param('onnx', marks=pytest.mark.skipif(not HAS_ONNX, reason='onnx/onnxruntime not installed')),
                 'state_dict',
                 pytest.param('safetensors', marks=pytest.mark.skipif(not HAS_SAFETENSORS,
                                                                      reason='safetensors not installed')),
                 'factory']

@pytest.fixture(scope='module')
def library_log(model, folder):
    path, extra = _write_model('library', model, folder)
    out = folder/'certify_library.tsv'
    run('rs_certify', 'digits', path, 0.25, out, *TINY, '--skip', 15, *extra)
    return out

@pytest.mark.parametrize('fmt', MODEL_FORMATS)
def test_model_format(fmt, model, folder, library_log):
    if fmt == 'factory':   # the factory's network is the MLP without its normalisation: inputs standardised first
        mean, std = model[0].mean.view(1, -1, 1, 1), model[0].std.view(1, -1, 1, 1)
        assert torch.allclose(model[1](torch.zeros(1, 1, 8, 8).sub(mean).div(std)), model(torch.zeros(1, 1, 8, 8)))
    path, extra = _write_model(fmt, model, folder)
    out = folder/f'certify_{fmt}.tsv'
    run('rs_certify', 'digits', path, 0.25, out, *TINY, '--skip', 15, *extra, cwd=folder)
    settings = json.loads(settings_path(out).read_text())
    assert len(settings['checkpoint_sha256']) == 64 and settings['units'].startswith('[0, 1] pixels')
    got, expected = rows(out), rows(library_log)
    if fmt == 'factory':    # no normalisation inside: another function, so only the plumbing is compared
        assert got.idx.tolist() == expected.idx.tolist() and (got.n == 100).all()
    elif fmt == 'onnx':     # other kernels: counts may differ by a draw or two near the decision boundary
        assert (got.predict == expected.predict).mean() >= 0.9 and (got.nA - expected.nA).abs().max() <= 3
    else: pd.testing.assert_frame_equal(got, expected)
    assert 'certified accuracy' in analyze([out]).lower()      # what rs_analyze prints (run below)

def _digits(per_class=3):
    "The first `per_class` test digits of each class, in class order."
    data = get_dataset('digits', 'test')
    picked = [i for c in range(10) for i in [j for j in range(len(data)) if data[j][1] == c][:per_class]]
    return torch.stack([data[i][0] for i in picked]), torch.tensor([data[i][1] for i in picked])

def _write_data(fmt, folder):
    "30 test digits, 3 of each class, written in format `fmt`; returns the DATASET argument."
    xs, ys = _digits()
    if fmt == 'image_folder':
        from PIL import Image
        root = folder/'digit_images'
        for i, (x, y) in enumerate(zip(xs, ys)):
            (root/str(int(y))).mkdir(parents=True, exist_ok=True)
            Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8), mode='L').save(root/str(int(y))/f'{i}.png')
        return root
    if fmt == 'npz': np.savez(folder/'digits.npz', x=xs.numpy(), y=ys.numpy()); return folder/'digits.npz'
    if fmt == 'pt': torch.save({'x': xs, 'y': ys}, folder/'digits.pt'); return folder/'digits.pt'
    if fmt == 'csv':
        table = pd.DataFrame(xs.flatten(1).numpy(), columns=[f'pixel{i}' for i in range(64)])
        table.insert(0, 'digit', ys.numpy())
        table.to_csv(folder/'digits.csv', index=False)
        return folder/'digits.csv'
    raise ValueError(fmt)

@pytest.mark.parametrize('fmt', ['image_folder', 'npz', 'pt', 'csv'])
def test_data_format(fmt, folder):
    source = _write_data(fmt, folder)
    extra = ['--label_column', 'digit'] if fmt == 'csv' else []
    data, info = load_dataset(str(source), 'test', **({'label_column': 'digit'} if fmt == 'csv' else {}))
    assert len(data) == 30 and info.num_classes == 10
    assert info.input_shape == {'csv': (64,), 'image_folder': (3, 8, 8)}.get(fmt, (1, 8, 8))   # PNGs read as RGB
    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder/f'model_{fmt}.pth.tar', get_architecture('mlp', info).eval(), arch='mlp',
                                 dataset=info, sigma=0.25)
    out = folder/f'data_{fmt}.tsv'
    run('rs_certify', source, checkpoint, 0.25, out, *TINY, '--skip', 3, *extra)
    log = pd.read_csv(out, sep='\t')
    assert log.idx.tolist() == list(range(0, 30, 3)) and (log.n == 100).all()
    assert set(log.label) <= set(range(10))
    units = json.loads(settings_path(out).read_text())['units']
    expected = {'image_folder': '[0, 1] pixels as fed', 'csv': f'the columns of {source} as stored'}
    assert expected.get(fmt, f'stored in {source}') in units, units
    assert 'certified accuracy' in analyze([out]).lower()

def test_label_space(folder):
    """Labels keep their meaning end to end: class folders named 0 ... 10 are classes 0 ... 10 (not sorted as
    strings, where '10' would be class 2), CSV integer labels are the ids, and the log's labels are those ids."""
    from PIL import Image
    xs, ys = _digits(per_class=2)
    ids = torch.where(ys == 9, 10, ys)                        # the nines in folder '10': 11 classes, 9 empty
    root = folder/'numbered'
    for i, (x, y) in enumerate(zip(xs, ids)):
        (root/str(int(y))).mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8), mode='L').save(root/str(int(y))/f'{i}.png')
    data, info = load_dataset(root)
    assert info.num_classes == 11 and info.classes == tuple(map(str, range(11)))
    order = sorted(range(len(ids)), key=lambda i: (str(int(ids[i])), f'{i}.png'))   # ImageFolder's file order
    assert [y for _, y in data] == [int(ids[i]) for i in order]
    torch.manual_seed(0)
    checkpoint = save_checkpoint(folder/'model_numbered.pth.tar', get_architecture('mlp', info).eval(), arch='mlp',
                                 dataset=info, sigma=0.25)
    out = folder/'labels_numbered.tsv'
    run('rs_certify', root, checkpoint, 0.25, out, *TINY, '--skip', 4)
    log = pd.read_csv(out, sep='\t')
    assert log.label.tolist() == [int(ids[order[i]]) for i in log.idx] and 10 in set(log.label)

def test_bad_data_refused(folder):
    "A label that is no class id, and images stored channels-last, are refused in one line, before any row."
    xs, ys = _digits(per_class=1)
    checkpoint = save_checkpoint(folder/'model_bad.pth.tar', get_architecture('mlp', 'digits').eval(), arch='mlp',
                                 dataset='digits', sigma=0.25)
    table = pd.DataFrame(xs.flatten(1).numpy(), columns=[f'p{i}' for i in range(64)]).assign(label=ys.numpy() - 1)
    table.to_csv(folder/'minus.csv', index=False)                # labels -1 ... 8
    err = run('rs_certify', folder/'minus.csv', checkpoint, 0.25, folder/'minus.tsv', *TINY, ok=False).stderr
    assert "column 'label': label -1 at index 0 is not a class id; labels must be integers >= 0" in err
    np.savez(folder/'hwc.npz', x=xs.permute(0, 2, 3, 1).numpy(), y=ys.numpy())   # (n, 8, 8, 1)
    err = run('rs_certify', folder/'hwc.npz', checkpoint, 0.25, folder/'hwc.tsv', *TINY, ok=False).stderr
    assert 'looks channels-last' in err and 'x.transpose(0, 3, 1, 2)' in err
    assert not (folder/'minus.tsv').exists() and not (folder/'hwc.tsv').exists()

def test_rs_analyze_reads_every_log(folder):
    """The command itself on every log the tests above wrote: the model formats' logs (all of the digits) in one
    table, each data format's log (a dataset of its own) alone."""
    logs = [p for p in sorted(folder.glob('*.tsv')) if len(p.read_text().splitlines()) > 1]  # no failed runs
    digits = [p for p in logs if p.name.startswith('certify_')]
    for group in [digits] * bool(digits) + [[p] for p in logs if p not in digits]:
        printed = run('rs_analyze', *group).stdout
        summary = printed.split('Summary', 1)[1].strip().split('\n\n')[0].splitlines()
        assert len(summary) == 2 + len(group), printed              # a header, a rule, a row per log
    assert logs
