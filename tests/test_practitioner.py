"""The practitioner's path (issue 25, with issue 24's command flags): the commands run as a user runs them (the
venv's console scripts, as processes), each checked on its message, its exit code and the files it leaves.
Tiny data written in `tmp_path`, small N: each test runs in seconds."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from randsmooth.data import DatasetInfo
from randsmooth.model_files import read_meta, save_checkpoint
from randsmooth.models import get_architecture

BIN = Path(sys.executable).parent
ENV = os.environ | {'OMP_NUM_THREADS': '1'}
SMALL = ['--N0', 20, '--N', 100, '--batch', 200, '--quiet']

def rs(name, *args, cwd=None):
    "Run the console script `name` as a user would; the finished process (stdout, stderr, returncode)."
    return subprocess.run([str(BIN/name), *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=300, cwd=cwd)

def image_folder(root, classes=('ant', 'bee'), per_class=3, size=(12, 10), mode='RGB'):
    "A folder of small images, one subfolder per class, of a size other than the model's (so resize matters)."
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in classes:
        (root/c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == 'RGB' else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root/c/f'{i}.png')
    return root

def tiny_checkpoint(path, classes=('ant', 'bee'), shape=(3, 8, 8), preprocessing=None, sigma=0.25):
    "A randomly initialised linear model on `shape` inputs, saved as a randsmooth checkpoint."
    info = DatasetInfo('folder', len(classes), shape, tuple(classes), None, None)
    torch.manual_seed(0)
    model = get_architecture('linear', info).eval()
    return save_checkpoint(path, model, arch='linear', dataset=info, sigma=sigma, classes=list(classes),
                           preprocessing=preprocessing)

def lines(text): return [l for l in text.splitlines() if l.strip()]

# --- issue 24 / 25-4: flags of rs_certify and rs_predict -------------------------------------------------------

def test_fast_false_samples_the_model_as_loaded(tmp_path):
    "`--fast False` turns the exact fast copy off; the first line says what is sampled, the settings record it."
    folder = image_folder(tmp_path/'imgs')
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar', preprocessing=dict(resize=8, crop=8, channels=3))
    out = tmp_path/'c.tsv'
    done = rs('rs_certify', folder, ckpt, 0.25, out, *SMALL[:-1], '--fast', 'False')
    assert done.returncode == 0, done.stderr
    assert 'as loaded (fast=False)' in done.stderr, done.stderr
    assert json.loads((tmp_path/'c.tsv.json').read_text())['fast'] == {'fast': False, 'why': 'fast=False'}
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'p.tsv', '--N', 50, '--fast', 'no')
    assert done.returncode == 0 and 'as loaded (fast=False)' in done.stderr, done.stderr
    done = rs('rs_certify', folder, ckpt, 0.25, tmp_path/'x.tsv', '--fast', 'maybe')
    assert done.returncode != 0 and '--fast' in done.stderr and not (tmp_path/'x.tsv').exists()

def test_preprocessing_is_remembered_and_said(tmp_path):
    "25-4: a checkpoint trained with resize/crop certifies an image folder of other sizes without the flags."
    folder = image_folder(tmp_path/'imgs')
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar', preprocessing=dict(resize=8, crop=8, channels=3))
    assert read_meta(ckpt)['preprocessing'] == dict(resize=8, crop=8, channels=3)
    out = tmp_path/'c.tsv'
    done = rs('rs_certify', folder, ckpt, 0.25, out, *SMALL)
    assert done.returncode == 0, done.stderr
    said = [l for l in done.stderr.splitlines() if 'preprocessing' in l]
    assert len(said) == 1 and '--resize 8 --crop 8' in said[0], done.stderr
    settings = json.loads((tmp_path/'c.tsv.json').read_text())
    assert (settings['resize'], settings['crop']) == (8, 8) and len(lines(out.read_text())) == 7
    # a flag given wins over the remembered one: resize 9 then crop 8 gives the same 8 x 8 inputs
    done = rs('rs_certify', folder, ckpt, 0.25, tmp_path/'d.tsv', *SMALL, '--resize', 9)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path/'d.tsv.json').read_text())['resize'] == 9

def test_without_remembered_preprocessing_the_error_names_the_flags(tmp_path):
    "A checkpoint that records no preprocessing: mixed sizes are refused naming the flags, and no file is left."
    folder = image_folder(tmp_path/'imgs')
    image_folder(folder, classes=('ant',), per_class=1, size=(9, 9))          # ant/0.png: another size
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar')
    done = rs('rs_certify', folder, ckpt, 0.25, tmp_path/'c.tsv', *SMALL)
    assert done.returncode == 1 and 'resize' in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert not (tmp_path/'c.tsv').exists() and not (tmp_path/'c.tsv.json').exists()

def test_channels_flag_keeps_gray_images_one_channel(tmp_path):
    "25-5: `--channels 1` (or auto on all-gray images) feeds a 1-channel model; 3 channels are refused clearly."
    folder = image_folder(tmp_path/'gray', size=(8, 8), mode='L')
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar', shape=(1, 8, 8))
    for channels in ('1', 'auto'):
        done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/f'p{channels}.tsv', '--N', 50, '--quiet',
                  '--channels', channels)
        assert done.returncode == 0, done.stderr
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'p3.tsv', '--N', 50, '--channels', 3)
    assert done.returncode == 1 and 'Traceback' not in done.stderr and not (tmp_path/'p3.tsv').exists()
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'p4.tsv', '--channels', 2)
    assert done.returncode == 1 and 'channels must be 1, 3 or auto' in done.stderr, done.stderr

def test_class_map_relabels_the_data(tmp_path):
    "20-B: data classes named otherwise are refused, and certify once `--class_map` maps them to the model's."
    folder = image_folder(tmp_path/'imgs', classes=('ant', 'bee'), size=(8, 8))
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar', classes=('dog', 'cat'))
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'p.tsv', '--N', 50, '--quiet')
    assert done.returncode == 1 and '--class_map' in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert not (tmp_path/'p.tsv').exists()
    out = tmp_path/'q.tsv'
    done = rs('rs_predict', folder, ckpt, 0.25, out, '--N', 50, '--quiet', '--class_map', 'ant=cat,bee=dog')
    assert done.returncode == 0, done.stderr
    labels = [int(l.split('\t')[1]) for l in lines(out.read_text())[1:]]
    assert labels == [1, 1, 1, 0, 0, 0]        # ant (data id 0) is the model's cat (id 1); bee is dog (id 0)
    settings = json.loads((tmp_path/'q.tsv.json').read_text())
    assert settings['classes'] == ['dog', 'cat'] and settings['class_map'] == {'ant': 'cat', 'bee': 'dog'}
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'r.tsv', '--class_map', 'ant')
    assert done.returncode == 1 and 'class_map must be DATA=MODEL' in done.stderr and 'Traceback' not in done.stderr

def test_sigma_mismatch_is_one_line(tmp_path):
    "25-5: the noise level the model was not trained with is one warning line, no file path or source line."
    folder = image_folder(tmp_path/'imgs', size=(8, 8))
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar', sigma=0.5)
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'p.tsv', '--N', 50, '--quiet')
    assert done.returncode == 0, done.stderr
    said = [l for l in done.stderr.splitlines() if 'sigma=0.5' in l]
    assert len(said) == 1 and said[0].startswith('rs_predict: warning: the model was trained'), done.stderr
    assert 'SigmaMismatchWarning' not in done.stderr and '.py:' not in done.stderr, done.stderr

def test_amp_bf16_is_recorded(tmp_path):
    "24: `--amp bf16` samples the bf16 autocast function, also in the fast copy; recorded in the settings."
    folder = image_folder(tmp_path/'imgs', size=(8, 8))
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar')
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'p.tsv', '--N', 50, '--quiet', '--amp', 'bf16')
    assert done.returncode == 0, done.stderr
    settings = json.loads((tmp_path/'p.tsv.json').read_text())
    assert settings['amp'] == 'bf16' and settings['fast'].get('amp') == 'bf16', settings
    done = rs('rs_predict', folder, ckpt, 0.25, tmp_path/'q.tsv', '--amp', 'fp8')
    assert done.returncode == 1 and 'amp' in done.stderr and not (tmp_path/'q.tsv').exists()

def test_units_note_names_pixels_only_for_stored_pixels(tmp_path):
    "25-5: the units note of float .npz features and CSV columns does not speak of uint8 pixels."
    ckpt = tiny_checkpoint(tmp_path/'m.pth.tar', shape=(4,))
    rng = np.random.default_rng(0)
    np.savez(tmp_path/'f.npz', x=rng.normal(size=(6, 4)).astype(np.float32), y=np.array([0, 1] * 3))
    np.savez(tmp_path/'u.npz', x=rng.integers(0, 256, (6, 4), dtype=np.uint8), y=np.array([0, 1] * 3))
    (tmp_path/'f.csv').write_text('a,b,c,d,label\n' + ''.join(f'{i},0.5,1,2,{i % 2}\n' for i in range(6)))
    notes = {}
    for name in ('f.npz', 'u.npz', 'f.csv'):
        done = rs('rs_predict', tmp_path/name, ckpt, 0.25, tmp_path/f'{name}.tsv', '--N', 50, '--quiet')
        assert done.returncode == 0, done.stderr
        notes[name] = json.loads((tmp_path/f'{name}.tsv.json').read_text())['units']
    assert 'uint8 pixels' not in notes['f.npz'] and 'stores uint8 pixels' in notes['u.npz'], notes
    assert 'uint8 pixels' not in notes['f.csv'] and 'feature units' in notes['f.csv'], notes

def test_long_example_shows_draws_done_and_time_left(tmp_path):
    "25-3: an example that runs past DRAWS_BAR_AFTER_S shows a second bar: draws done of n0 + n, and the time left."
    (tmp_path/'slow_net.py').write_text(
        "import time, torch\n"
        "class Slow(torch.nn.Module):\n"
        "    def __init__(self, num_classes=2, **kwargs):\n"
        "        super().__init__(); self.lin = torch.nn.Linear(4, num_classes)\n"
        "    def forward(self, x):\n"
        "        if len(x) == 10: time.sleep(0.4)   # the draws only: 10 batches of 10, 4 s\n"
        "        return self.lin(x)\n"
        "def build(num_classes=2, **kwargs): return Slow(num_classes)\n")
    import importlib, sys as _sys
    _sys.path.insert(0, str(tmp_path))
    try: torch.save(importlib.import_module('slow_net').build().state_dict(), tmp_path/'slow.pth')
    finally: _sys.path.remove(str(tmp_path))
    np.savez(tmp_path/'f.npz', x=np.zeros((2, 4), np.float32), y=np.array([0, 1]))
    env = ENV | {'PYTHONPATH': str(tmp_path)}
    done = subprocess.run([str(BIN/'rs_certify'), tmp_path/'f.npz', tmp_path/'slow.pth', '0.25', tmp_path/'c.tsv',
                           '--arch', 'slow_net:build', '--N0', '10', '--N', '90', '--batch', '10',
                           '--fast', 'False', '--max', '1'], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'draws:' in done.stderr and '/100' in done.stderr, done.stderr      # n0 + n = 100 draws
    assert '<' in done.stderr.split('draws:')[-1], done.stderr                 # tqdm's time left

def test_class_count_mismatch_names_both_counts(tmp_path):
    "A model with 10 outputs on a 3-class folder: the message names both counts, the classes and the fix."
    folder = image_folder(tmp_path/'imgs', classes=('ant', 'bee', 'cow'))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
    torch.jit.save(torch.jit.script(model), str(tmp_path/'m10.pt'))
    out = tmp_path/'c.tsv'
    done = rs('rs_certify', folder, tmp_path/'m10.pt', 0.25, out, *SMALL, '--resize', 8, '--crop', 8)
    assert done.returncode != 0
    msg = lines(done.stderr)
    assert len(msg) == 1, done.stderr
    assert '10 class scores but 3 classes are expected (ant, bee, cow)' in msg[0], msg[0]
    assert 'trained on these 3 classes' in msg[0]
    assert not out.exists() and not (tmp_path/'c.tsv.json').exists()
