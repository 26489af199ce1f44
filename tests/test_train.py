"End-to-end tests of `rs_train`: DistributedDataParallel under torchrun (2 CPU processes, gloo), kill and resume, bad input."
import os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from randsmooth.data import get_dataset
from randsmooth.models import load_checkpoint
from randsmooth.train import CHECKPOINT_NAME, LOG_NAME, read_train_log

ARCH = 'small_cnn'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}   # one thread per process: fast for this tiny net, and bitwise repeatable
N_TRAIN = len(get_dataset('digits', 'train'))

def command(*args): return [sys.executable, '-m', 'randsmooth.train', *map(str, args)]

def run(*args, timeout=300):
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout, env=ENV)

def weights(path): return load_checkpoint(path)[0].state_dict()

def test_torchrun_two_processes(tmp_path):
    "2 processes with gloo: each epoch covers the training set exactly once, one log row per epoch, one checkpoint, loss down."
    out = tmp_path/'ddp'
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        '-m', 'randsmooth.train', 'digits', ARCH, str(out), '--sigma', '0.25', '--epochs', '2',
                        '--batch', '64', '--quiet'], capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    log = read_train_log(out/LOG_NAME)
    assert log.epoch.tolist() == [1, 2]                   # written by rank 0 only: no duplicated rows
    assert (log.train_n == N_TRAIN).all() and (log.train_distinct == N_TRAIN).all()   # every example once per epoch
    assert log.train_loss.iloc[1] < log.train_loss.iloc[0]
    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_NAME, LOG_NAME])   # one checkpoint, no temporaries
    raw = torch.load(out/CHECKPOINT_NAME, weights_only=True)
    assert raw['epoch'] == 2 and raw['state']['settings']['world_size'] == 2
    assert [row['epoch'] for row in raw['state']['history']] == [1, 2]

def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    "SIGKILL mid-run, then --resume: the log and the weights equal those of an uninterrupted run with the same seed."
    args = ('--sigma', '0.5', '--epochs', '8', '--lr_step', '5', '--batch', '64', '--seed', '3', '--quiet')
    reference = run('digits', ARCH, tmp_path/'reference', *args)
    assert reference.returncode == 0, reference.stderr
    killed = tmp_path/'killed'
    proc = subprocess.Popen(command('digits', ARCH, killed, *args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed/LOG_NAME).exists() and len((killed/LOG_NAME).read_text().splitlines()) >= 2: break   # epoch 1 done
        time.sleep(0.02)
    assert proc.poll() is None, 'the run finished before it could be killed'
    proc.send_signal(signal.SIGKILL); proc.wait()
    done = read_train_log(killed/LOG_NAME).epoch.tolist()
    assert 1 <= len(done) < 8 and done == list(range(1, len(done) + 1))
    refused = run('digits', ARCH, killed, *args)           # without --resume the run is not overwritten
    assert refused.returncode == 1 and 'resume' in refused.stderr
    resumed = run('digits', ARCH, killed, *args, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_train_log(tmp_path/'reference'/LOG_NAME), read_train_log(killed/LOG_NAME)
    assert a.drop(columns='time').equals(b.drop(columns='time'))
    wa, wb = weights(tmp_path/'reference'/CHECKPOINT_NAME), weights(killed/CHECKPOINT_NAME)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

def rs_train_in_process(monkeypatch, *args):
    "Run the `rs_train` console-script function in this process with `args` as its command line; its exit code (None: success)."
    from randsmooth.train import rs_train
    monkeypatch.setattr(sys, 'argv', ['rs_train', *map(str, args)])
    try: rs_train()
    except SystemExit as e: return e.code

def test_help_explains_every_option(monkeypatch, capsys):
    assert rs_train_in_process(monkeypatch, '--help') == 0
    text = capsys.readouterr().out
    for option in ('--sigma', '--epochs', '--batch', '--lr', '--lr_step', '--gamma', '--momentum', '--weight_decay', '--workers',
                   '--data_dir', '--seed', '--resume', '--device', '--amp', '--channels_last', '--stop_after', '--download', '--quiet'):
        assert option in text, option

@pytest.mark.parametrize('args, message', [
    (('--sigma', '-0.5'), 'sigma'),
    ((), 'sigma is required'),
    (('--sigma', '0.25', '--epochs', '0'), 'epochs'),
    (('--sigma', '0.25', '--batch', '0'), 'batch'),
    (('--sigma', '0.25', '--lr', '0'), 'lr'),
    (('--sigma', '0.25', '--lr-step', '0'), 'lr_step'),            # hyphenated spelling of --lr_step
    (('--sigma', '0.25', '--data-dir', '/nonexistent', '--amp', 'fp8'), 'amp'),
])
def test_bad_option_is_one_line_error(monkeypatch, tmp_path, args, message):
    out = tmp_path/'run'
    code = rs_train_in_process(monkeypatch, 'digits', ARCH, out, *args)
    assert isinstance(code, str) and code.startswith('rs_train: error:') and message in code, code
    assert not out.exists()

@pytest.mark.parametrize('dataset, arch, valid', [('svhn', ARCH, 'digits, synthetic, mnist, cifar10, imagenet'),
                                                  ('digits', 'vgg', 'cifar_resnet110, resnet50, small_cnn')])
def test_unknown_names_list_the_valid_ones(monkeypatch, tmp_path, dataset, arch, valid):
    code = rs_train_in_process(monkeypatch, dataset, arch, tmp_path/'run', '--sigma', '0.25')
    assert code.startswith('rs_train: error:') and valid in code, code

def test_bad_input_from_the_shell(tmp_path):
    "The installed command's view: exit status 1, one line on stderr, no traceback, nothing written."
    r = run('digits', ARCH, tmp_path/'run', '--sigma', '-1')
    assert r.returncode == 1 and r.stderr.strip().splitlines() == ['rs_train: error: sigma must be finite and >= 0, got -1.0'], r.stderr
    assert not (tmp_path/'run').exists()

def test_resume_from_another_architecture_is_refused(monkeypatch, tmp_path):
    out = tmp_path/'run'
    assert rs_train_in_process(monkeypatch, 'digits', ARCH, out, '--sigma', '0.25', '--epochs', '1', '--batch', '64', '--quiet') is None
    before = (out/CHECKPOINT_NAME).read_bytes()
    code = rs_train_in_process(monkeypatch, 'digits', 'mlp', out, '--sigma', '0.25', '--epochs', '2', '--resume')
    assert 'arch' in code and 'small_cnn' in code, code
    assert (out/CHECKPOINT_NAME).read_bytes() == before

def fake_cifar10(root:Path, per_batch:int=40):
    "Tiny random files in the CIFAR-10 python format: 5 training batches and a test batch of `per_batch` images each."
    import pickle, numpy as np
    folder = root/'cifar-10-batches-py'; folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        batch = {'data': rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), 'labels': rng.integers(0, 10, per_batch).tolist()}
        (folder/name).write_bytes(pickle.dumps(batch))
    (folder/'batches.meta').write_bytes(pickle.dumps({'label_names': ['c%d' % i for i in range(10)]}))
    return root

def test_file_backed_data_with_workers_resumes_exactly(tmp_path):
    "CIFAR-10 files through DataLoader workers, random crops and flips: a stopped and resumed run equals an uninterrupted one."
    from randsmooth.train import train
    torch.set_num_threads(1)
    data = fake_cifar10(tmp_path/'data')
    opts = dict(sigma=0.25, epochs=2, batch=50, workers=2, data_dir=data, seed=1, progress=False)
    full = train('cifar10', 'cifar_resnet20', tmp_path/'full', **opts)
    train('cifar10', 'cifar_resnet20', tmp_path/'part', stop_after=1, **opts)
    part = train('cifar10', 'cifar_resnet20', tmp_path/'part', resume=True, **opts)
    a, b = read_train_log(tmp_path/'full'/LOG_NAME), read_train_log(tmp_path/'part'/LOG_NAME)
    assert (a.train_n == 200).all() and (a.train_distinct == 200).all()
    assert a.drop(columns='time').equals(b.drop(columns='time'))
    wa, wb = weights(full), weights(part)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
