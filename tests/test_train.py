"""End-to-end tests of `rs_train`: DistributedDataParallel under torchrun (2 CPU processes, gloo),
kill and resume, refused resumes, data from paths, any objective, bad input."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest, torch
from randsmooth.data import get_dataset
from randsmooth.model_files import load_checkpoint
from randsmooth.methods import GaussianObjective, add_noise
from randsmooth.train import CHECKPOINT_NAME, LOG_NAME, SETTINGS_NAME, read_train_log, train

ARCH = 'small_cnn'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}   # one thread per process: fast, bitwise repeatable
N_TRAIN = len(get_dataset('digits', 'train'))
RUN_FILES = (CHECKPOINT_NAME, LOG_NAME, SETTINGS_NAME)

RS_TRAIN = [sys.executable, '-c', "import sys; sys.argv[0] = 'rs_train'; "
            "from randsmooth.cli import rs_train; sys.exit(rs_train())"]   # the console script

def command(*args): return [*RS_TRAIN, *map(str, args)]

def run(*args, timeout=300):
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout, env=ENV)

def weights(path): return load_checkpoint(path)[0].state_dict()

def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return all(torch.equal(wa[k], wb[k]) for k in wa)

def same_logs(a, b):
    rows = [read_train_log(d/LOG_NAME).drop(columns='time') for d in (a, b)]
    return rows[0].equals(rows[1])

def test_torchrun_two_processes(tmp_path):
    "2 processes with gloo: every example once per epoch, one log row per epoch, loss down."
    out = tmp_path/'ddp'
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                        '--nproc_per_node', '2', '--no-python', *RS_TRAIN, 'digits', ARCH, str(out),
                        '--sigma', '0.25', '--epochs', '2', '--batch', '64', '--quiet'],
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    log = read_train_log(out/LOG_NAME)
    assert log.epoch.tolist() == [1, 2]                   # written by rank 0 only: no duplicates
    assert (log.train_n == N_TRAIN).all() and (log.train_distinct == N_TRAIN).all()
    assert log.train_loss.iloc[1] < log.train_loss.iloc[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)   # no temporary files
    raw = torch.load(out/CHECKPOINT_NAME, weights_only=True)
    assert raw['epoch'] == 2 and [g['world_size'] for g in raw['state']['segments']] == [2]
    assert [row['epoch'] for row in raw['state']['history']] == [1, 2]

def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    "SIGKILL mid-run, then --resume: the log and weights equal those of an uninterrupted run."
    args = ('--sigma', '0.5', '--epochs', '8', '--lr_step', '5', '--batch', '64', '--seed', '3',
            '--quiet')
    reference = run('digits', ARCH, tmp_path/'reference', *args)
    assert reference.returncode == 0, reference.stderr
    killed = tmp_path/'killed'
    proc = subprocess.Popen(command('digits', ARCH, killed, *args), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        log = killed/LOG_NAME
        if log.exists() and len(log.read_text().splitlines()) >= 2: break   # epoch 1 done
        time.sleep(0.02)
    assert proc.poll() is None, 'the run finished before it could be killed'
    proc.send_signal(signal.SIGKILL); proc.wait()
    done = read_train_log(killed/LOG_NAME).epoch.tolist()
    assert 1 <= len(done) < 8 and done == list(range(1, len(done) + 1))
    refused = run('digits', ARCH, killed, *args)           # without --resume: not overwritten
    assert refused.returncode == 1 and 'resume' in refused.stderr
    resumed = run('digits', ARCH, killed, *args, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    assert same_logs(tmp_path/'reference', killed)
    assert same_weights(tmp_path/'reference'/CHECKPOINT_NAME, killed/CHECKPOINT_NAME)

def rs_train_in_process(monkeypatch, *args):
    "Run the `rs_train` console-script function here with `args`; its exit code (None: success)."
    from randsmooth.cli import rs_train
    monkeypatch.setattr(sys, 'argv', ['rs_train', *map(str, args)])
    try: rs_train()
    except SystemExit as e: return e.code

def test_help_explains_every_option(monkeypatch, capsys):
    assert rs_train_in_process(monkeypatch, '--help') == 0
    text = capsys.readouterr().out
    for option in ('--sigma', '--epochs', '--batch', '--lr', '--lr_step', '--gamma', '--momentum',
                   '--weight_decay', '--workers', '--data_dir', '--seed', '--resume', '--device',
                   '--amp', '--channels_last', '--stop_after', '--download', '--quiet', '--method',
                   '--method_options', '--resize', '--crop', '--label_column'):
        assert option in text, option

def test_help_does_not_import_torch():
    probe = ("import sys; sys.argv = ['rs_train', '--help']\nfrom randsmooth.cli import rs_train\n"
             "try: rs_train()\nexcept SystemExit: pass\nprint('torch' in sys.modules)")
    r = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, env=ENV)
    assert r.stdout.strip().splitlines()[-1] == 'False', r.stdout + r.stderr

@pytest.mark.parametrize('args, message', [
    (('--sigma', '-0.5'), 'sigma'),
    ((), 'sigma is required'),
    (('--sigma', '0.25', '--epochs', '0'), 'epochs'),
    (('--sigma', '0.25', '--batch', '0'), 'batch'),
    (('--sigma', '0.25', '--lr', '0'), 'lr'),
    (('--sigma', '0.25', '--lr-step', '0'), 'lr_step'),            # hyphenated --lr_step
    (('--sigma', '0.25', '--data-dir', '/nonexistent', '--amp', 'fp8'), 'amp'),
    (('--sigma', '0.25', '--method', 'nope'), 'gaussian'),           # lists the methods
])
def test_bad_option_is_one_line_error(monkeypatch, tmp_path, args, message):
    out = tmp_path/'run'
    code = rs_train_in_process(monkeypatch, 'digits', ARCH, out, *args)
    assert isinstance(code, str) and code.startswith('rs_train: error:') and message in code, code
    assert not out.exists()

@pytest.mark.parametrize('dataset, arch, valid', [
    ('svhn', ARCH, 'digits, synthetic, mnist, cifar10, imagenet'),
    ('digits', 'vgg', 'cifar_resnet110, resnet50, small_cnn')])
def test_unknown_names_list_the_valid_ones(monkeypatch, tmp_path, dataset, arch, valid):
    code = rs_train_in_process(monkeypatch, dataset, arch, tmp_path/'run', '--sigma', '0.25')
    assert code.startswith('rs_train: error:') and valid in code, code

def test_bad_input_from_the_shell(tmp_path):
    "The installed command's view: exit status 1, one line on stderr, nothing written."
    r = run('digits', ARCH, tmp_path/'run', '--sigma', '-1')
    assert r.returncode == 1, r.stderr
    said = 'rs_train: error: --sigma must be a finite number >= 0, got -1.0'
    assert r.stderr.strip().splitlines() == [said]
    assert not (tmp_path/'run').exists()

def test_messages_name_the_flag_for_the_command_and_the_argument_for_python(monkeypatch, tmp_path):
    "Issue 21: `rs_train` names what its user typed (`--lr_step`); `train()` its own argument (`lr_step`)."
    from randsmooth.train import train
    code = rs_train_in_process(monkeypatch, 'digits', ARCH, tmp_path/'run', '--sigma', '0.25', '--lr-step', '0')
    assert code == 'rs_train: error: --lr_step must be an integer >= 1, got 0', code
    with pytest.raises(ValueError, match='^lr_step must be an integer >= 1, got 0$'):
        train('digits', ARCH, tmp_path/'run', sigma=0.25, lr_step=0)
    with pytest.raises(ValueError, match='^sigma is required'): train('digits', ARCH, tmp_path/'run')
    assert not (tmp_path/'run').exists()

def test_resume_from_another_architecture_is_refused(monkeypatch, tmp_path):
    out = tmp_path/'run'
    first = ('--sigma', '0.25', '--epochs', '1', '--batch', '64', '--quiet')
    assert rs_train_in_process(monkeypatch, 'digits', ARCH, out, *first) is None
    before = (out/CHECKPOINT_NAME).read_bytes()
    code = rs_train_in_process(monkeypatch, 'digits', 'mlp', out, '--sigma', '0.25', '--resume')
    assert 'arch' in code and 'small_cnn' in code, code
    assert (out/CHECKPOINT_NAME).read_bytes() == before

def test_resume_with_changed_recipe_is_refused_naming_each_setting(tmp_path):
    "Issue 13, defect 9: --seed 3 --lr 0.1 resumed as --seed 4 --lr 0.5 --batch 32: refused."
    out = tmp_path/'run'
    recipe = ('--sigma', '0.25', '--seed', '3', '--lr', '0.1', '--batch', '64')
    first = run('digits', ARCH, out, *recipe, '--epochs', '3', '--stop_after', '1', '--quiet')
    assert first.returncode == 0, first.stderr
    before = [(out/name).read_bytes() for name in RUN_FILES]
    changed = run('digits', ARCH, out, '--sigma', '0.25', '--seed', '4', '--lr', '0.5',
                  '--batch', '32', '--resume')
    assert changed.returncode == 1 and len(changed.stderr.strip().splitlines()) == 1, changed.stderr
    for said in ('seed 3, not 4', 'lr 0.1, not 0.5', 'batch 64, not 32'):
        assert said in changed.stderr
    assert [(out/name).read_bytes() for name in RUN_FILES] == before
    same = run('digits', ARCH, out, *recipe, '--resume', '--quiet')   # to its own 3 epochs
    assert same.returncode == 0, same.stderr
    assert read_train_log(out/LOG_NAME).lr.tolist() == [0.1, 0.1, 0.1]

def test_default_epochs_and_where_the_run_is(tmp_path):
    "rs_train digits defaults to 15 epochs (says --help); a run ends by printing where it wrote."
    out = tmp_path/'run'
    r = run('digits', ARCH, out, '--sigma', '0.25', '--batch', '128', '--stop_after', '1',
            '--quiet')
    assert r.returncode == 0, r.stderr
    assert json.loads((out/SETTINGS_NAME).read_text())['epochs'] == 15
    assert f'checkpoint: {out/CHECKPOINT_NAME}' in r.stdout, r.stdout
    assert f'log: {out/LOG_NAME}' in r.stdout, r.stdout
    assert '15 for digits' in run('--help').stdout

@pytest.mark.parametrize('where', ['in_a_file', 'unwritable'])
def test_outdir_that_cannot_be_made_is_one_line_error(tmp_path, where):
    "OUTDIR inside a regular file, or where no folder can be made: one line, exit status 1."
    afile = tmp_path/'afile'; afile.write_text('x')
    outdir = afile/'run' if where == 'in_a_file' else Path('/proc/randsmooth_no_such_place/run')
    r = run('digits', ARCH, outdir, '--sigma', '0.25', '--epochs', '1', '--quiet')
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('rs_train: error:'), r.stderr
    assert str(outdir.parent) in lines[0], r.stderr

def fake_cifar10(root:Path, per_batch:int=40):
    "Tiny random files in the CIFAR-10 python format: 5 training batches and a test batch."
    import pickle
    folder = root/'cifar-10-batches-py'; folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        batch = {'data': rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 'labels': rng.integers(0, 10, per_batch).tolist()}
        (folder/name).write_bytes(pickle.dumps(batch))
    meta = {'label_names': ['c%d' % i for i in range(10)]}
    (folder/'batches.meta').write_bytes(pickle.dumps(meta))
    return root

def test_file_backed_data_with_workers_resumes_exactly(tmp_path):
    "CIFAR-10 files through loader workers, crops and flips: stopped + resumed equals one run."
    from randsmooth.train import train
    torch.set_num_threads(1)
    data = fake_cifar10(tmp_path/'data')
    opts = dict(sigma=0.25, epochs=2, batch=50, workers=2, data_dir=data, seed=1, progress=False)
    full = train('cifar10', 'cifar_resnet20', tmp_path/'full', **opts)
    train('cifar10', 'cifar_resnet20', tmp_path/'part', stop_after=1, **opts)
    part = train('cifar10', 'cifar_resnet20', tmp_path/'part', resume=True, **opts)
    a = read_train_log(tmp_path/'full'/LOG_NAME)
    assert (a.train_n == 200).all() and (a.train_distinct == 200).all()
    assert same_logs(tmp_path/'full', tmp_path/'part') and same_weights(full, part)

def test_own_data_and_torchvision_architecture_from_the_shell(tmp_path):
    "Issue 14: rs_train on a .npz file with a torchvision architecture by name; it resumes."
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(48, 3, 16, 16, generator=g), torch.arange(48) % 4
    np.savez(tmp_path/'data.npz', x_train=x.numpy(), y_train=y.numpy(), x_test=x[:16].numpy(),
             y_test=y[:16].numpy())
    out = tmp_path/'run'
    args = (tmp_path/'data.npz', 'resnet18', out, '--sigma', '0.25', '--epochs', '2',
            '--batch', '16', '--quiet')
    first = run(*args, '--stop_after', '1')
    assert first.returncode == 0, first.stderr
    resumed = run(*args, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    model, meta = load_checkpoint(out/CHECKPOINT_NAME)
    described = [meta[k] for k in ('arch', 'dataset', 'num_classes', 'epoch')]
    assert described == ['resnet18', str(tmp_path/'data.npz'), 4, 2]
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    assert read_train_log(out/LOG_NAME).train_n.tolist() == [48, 48]

def write_pictures(folder, per_class:int, shape:tuple):
    "An image folder of PNGs: train/ and test/, each with `per_class` cat and dog images of `shape`."
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ('train', 'test'):
        for c, name in enumerate(('cat', 'dog')):
            (folder/split/name).mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.random(shape) * 128 + 127 * c).astype(np.uint8)
                Image.fromarray(pixels).save(folder/split/name/f'{i}.png')

def test_image_folder_with_resize_and_crop(tmp_path):
    "Issue 14: rs_train on an ImageFolder of PNGs (train/, test/), resized and cropped."
    write_pictures(tmp_path/'pics', 6, (20, 24, 3))
    out = tmp_path/'run'
    r = run(tmp_path/'pics', 'small_cnn', out, '--sigma', '0.25', '--epochs', '1', '--batch', '6',
            '--resize', '12', '--crop', '10', '--workers', '0', '--quiet')
    assert r.returncode == 0, r.stderr
    model, meta = load_checkpoint(out/CHECKPOINT_NAME)
    assert meta['classes'] == ['cat', 'dog'] and model(torch.rand(2, 3, 10, 10)).shape == (2, 2)
    assert read_train_log(out/LOG_NAME).train_n.tolist() == [12]
    from randsmooth.model_files import read_meta                       # issue 25-4: remembered for rs_certify
    assert read_meta(out/CHECKPOINT_NAME)['preprocessing'] == dict(resize=12, crop=10, channels=3)
    assert 'held-out' not in r.stderr and json.loads((out/SETTINGS_NAME).read_text()).get('held_out') is None

def test_image_folder_given_from_home_keeps_its_preprocessing(tmp_path, monkeypatch):
    "A folder given as ~/pics is read where load_dataset reads it, and its preprocessing is recorded."
    from randsmooth.model_files import read_meta
    monkeypatch.setenv('HOME', str(tmp_path))
    write_pictures(tmp_path/'pics', 2, (14, 14, 3))
    checkpoint = train('~/pics', 'small_cnn', tmp_path/'run', sigma=0.25, epochs=1, batch=4,
                       resize=12, crop=10, workers=0, progress=False)
    assert read_meta(checkpoint)['preprocessing'] == dict(resize=12, crop=10, channels=3)

def test_data_without_held_out_split_is_said(tmp_path):
    "Issue 25-5: x and y only (no x_test): rs_train says the 'test' columns are training examples, and records it."
    rng = np.random.default_rng(0)
    np.savez(tmp_path/'d.npz', x=rng.random((24, 4)).astype(np.float32), y=np.arange(24) % 2)
    out = tmp_path/'run'
    r = run(tmp_path/'d.npz', 'mlp', out, '--sigma', '0.25', '--epochs', '1', '--batch', '8', '--quiet')
    assert r.returncode == 0, r.stderr
    said = [l for l in r.stderr.splitlines() if 'no held-out split' in l]
    assert len(said) == 1 and 'training examples' in said[0], r.stderr
    assert json.loads((out/SETTINGS_NAME).read_text())['held_out'] is False

def test_help_lists_pt_among_data_formats():
    "Issue 25-5: rs_train --help names every data format load_dataset reads, .pt included."
    r = subprocess.run(command('--help'), capture_output=True, text=True, timeout=60)
    assert '.npz, .pt, .csv' in ' '.join(r.stdout.split()), r.stdout

class AdamObjective:
    "An objective that asks for Adam, as the denoiser's does."
    noisy_copies, options, optimizer = 1, {}, 'adam'
    def __init__(self, sigma): self.sigma = sigma
    def __call__(self, model, x, y):
        logits = model(add_noise(x, self.sigma))
        return torch.nn.functional.cross_entropy(logits, y), logits

def test_objective_chooses_the_optimizer_and_it_is_recorded(monkeypatch, tmp_path):
    "Request 5: `objective.optimizer = 'adam'` trains with Adam at --lr; recorded, and resume with SGD refused."
    import randsmooth.train as rt
    def fake_make_objective(method, options, *, sigma, num_classes):
        return AdamObjective(sigma) if method == 'adam_one' else GaussianObjective(sigma)
    monkeypatch.setattr(rt, 'make_objective', fake_make_objective)
    opts = dict(sigma=0.25, epochs=2, batch=64, seed=2, progress=False, lr=0.001)
    path = rt.train('digits', ARCH, tmp_path/'a', stop_after=1, method='adam_one', **opts)
    state = torch.load(path, weights_only=True)['state']
    group = state['optimizer']['param_groups'][0]
    assert 'betas' in group and group['lr'] == 0.001, group          # Adam's, at --lr
    assert json.loads((tmp_path/'a'/SETTINGS_NAME).read_text())['optimizer'] == 'adam'
    with pytest.raises(ValueError, match="optimizer 'adam', not 'sgd'"):
        monkeypatch.setattr(AdamObjective, 'optimizer', 'sgd')
        rt.train('digits', ARCH, tmp_path/'a', resume=True, method='adam_one', **opts)

class TwoCopies:
    "A stand-in for a method of randsmooth.methods: two noisy copies per example, a schedule."
    noisy_copies, options = 2, {'copies': 2}
    def __init__(self, sigma): self.sigma, self.epochs_seen = sigma, []
    def set_epoch(self, epoch, epochs): self.epochs_seen.append((epoch, epochs))
    def __call__(self, model, x, y):
        logits = model(torch.cat([add_noise(x, self.sigma), add_noise(x, self.sigma)]))
        return torch.nn.functional.cross_entropy(logits, torch.cat([y, y])), logits[:len(y)]

def test_any_objective_trains_resumes_exactly_and_is_recorded(monkeypatch, tmp_path):
    "Any objective: set_epoch is called, stop + resume equals one run, the method is recorded."
    import randsmooth.train as rt
    made = []
    def fake_make_objective(method, options, *, sigma, num_classes):
        if method == 'gaussian': return GaussianObjective(sigma)
        assert (method, num_classes) == ('two', 10)
        made.append(TwoCopies(sigma)); return made[-1]
    monkeypatch.setattr(rt, 'make_objective', fake_make_objective)
    opts = dict(sigma=0.25, epochs=3, batch=64, seed=2, progress=False, method='two')
    full = rt.train('digits', ARCH, tmp_path/'full', **opts)
    assert made[-1].epochs_seen == [(1, 3), (2, 3), (3, 3)]
    rt.train('digits', ARCH, tmp_path/'part', stop_after=1, **opts)
    part = rt.train('digits', ARCH, tmp_path/'part', resume=True, **opts)
    assert made[-1].epochs_seen == [(2, 3), (3, 3)]
    assert same_logs(tmp_path/'full', tmp_path/'part') and same_weights(full, part)
    saved = json.loads((tmp_path/'part'/SETTINGS_NAME).read_text())
    assert (saved['method'], saved['method_options']) == ('two', {'copies': 2})
    with pytest.raises(ValueError, match="method 'two', not 'gaussian'"):
        rt.train('digits', ARCH, tmp_path/'part', resume=True, **{**opts, 'method': 'gaussian'})

def test_resume_with_another_label_column_is_refused(tmp_path):
    "Issue 20-E: a run trained on one CSV label column does not continue on another (other labels, same shapes)."
    g = np.random.default_rng(0)
    rows = ['f0,f1,f2,label,other'] + [f'{a:.4f},{b:.4f},{c:.4f},{i % 2},{i // 2 % 2}'
                                       for i, (a, b, c) in enumerate(g.random((40, 3)))]
    (tmp_path/'data.csv').write_text('\n'.join(rows) + '\n')
    out = tmp_path/'run'
    args = (tmp_path/'data.csv', 'mlp', out, '--sigma', '0.25', '--epochs', '2', '--batch', '16', '--quiet')
    first = run(*args, '--label_column', 'label', '--stop_after', '1')
    assert first.returncode == 0, first.stderr
    before = [(out/name).read_bytes() for name in RUN_FILES]
    changed = run(*args, '--label_column', 'other', '--resume')
    assert changed.returncode == 1 and len(changed.stderr.strip().splitlines()) == 1, changed.stderr
    assert "label_column 'label', not 'other'" in changed.stderr, changed.stderr
    assert [(out/name).read_bytes() for name in RUN_FILES] == before
    same = run(*args, '--label_column', 'label', '--resume')
    assert same.returncode == 0, same.stderr
