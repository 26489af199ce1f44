"""Training images/s of every method of `randsmooth.methods`, relative to Gaussian augmentation,
for the digits CNN and a CIFAR-10 ResNet-20 (and, on a GPU, the peak memory of a step); with
`--memory`, the extra CPU memory of training steps of every method, relative to Gaussian.

    python tests/bench/bench_methods.py                  # CPU, float32
    python tests/bench/bench_methods.py --device cuda    # GPU, bfloat16 autocast + channels_last
    python tests/bench/bench_methods.py --memory         # CPU peak RSS, 1 thread, batch 32, 2 steps
    python tests/bench/bench_methods.py --memory --mem_batch 128 --mem_steps 5   # bigger

The memory table runs each (network, method) in a fresh process (so peaks do not mix) with one
thread: the model, objective and batch are built, the resident memory is read, then the steps run;
"extra MiB" is the peak resident memory (`ru_maxrss`) minus that reading, i.e. what the steps add
(activations kept for the backward pass, gradients, optimiser state, the attack's passes). It is
shown next to the objective's number of noisy copies per example (`noisy_copies`).

Each method runs with the options of `DIGITS_COMPARISON` (the notebook's comparison); a step is
`randsmooth.train.train_step` on fixed random inputs of the dataset's shape, so the figures are
those of `rs_train` minus data loading. Denoised smoothing is timed as a denoiser in front of the
same fixed network. Prints a markdown table naming the hardware.
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path
import torch
from randsmooth.data import dataset_info
from randsmooth.experiments import DIGITS_COMPARISON
from randsmooth.methods import make_objective
from randsmooth.model_files import save_checkpoint
from randsmooth.models import get_architecture
from randsmooth.runtime import resolve_device
from randsmooth.train import train_step

CONFIGS = [('small_cnn', 'digits', 256), ('cifar_resnet20', 'cifar10', 128)]

def cpu_name():
    "The CPU's model name (`lscpu`), else what `platform` knows."
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        return next(l.split(':', 1)[1].strip() for l in out.splitlines() if 'Model name' in l)
    except Exception: return platform.processor() or 'unknown CPU'

def hardware(device):
    if device.type == 'cuda': return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"

def method_setup(arch, dataset, method, options, folder):
    """(network, options, options as shown) of `method` on `arch`; 'denoise' trains a denoiser in
    front of a fixed `arch` classifier, whose file is written in `folder`."""
    if method != 'denoise': return arch, options, options or ''
    path = Path(folder)/f'{arch}.pth.tar'
    save_checkpoint(path, get_architecture(arch, dataset), arch=arch, dataset=dataset, sigma=0.0,
                    epoch=0)
    options = ','.join(filter(None, [f'classifier={path}', options]))
    return 'randsmooth.methods:denoiser', options, '(fixed classifier)'

def rate(arch, dataset, batch, device, method, options, amp, steps, repeats):
    "Images/s of the fastest of `repeats` rounds of `steps` training steps, and the peak memory."
    info, fmt = dataset_info(dataset), torch.channels_last if amp else torch.contiguous_format
    torch.manual_seed(0)
    model = get_architecture(arch, dataset).to(device, memory_format=fmt).train()
    objective = make_objective(method, options, sigma=0.25, num_classes=info.num_classes)
    x = torch.rand(batch, *info.input_shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, info.num_classes, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = torch.bfloat16 if amp else None
    train_step(model, x, y, opt, objective, dtype)
    if device.type == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    best = float('inf')
    for _ in range(repeats):
        tic = time.perf_counter()
        for _ in range(steps): train_step(model, x, y, opt, objective, dtype)
        if device.type == 'cuda': torch.cuda.synchronize()
        best = min(best, time.perf_counter() - tic)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else float('nan')
    return batch * steps / best, peak

def rss_mib():
    "The process's resident memory now, in MiB (Linux `/proc/self/statm`)."
    with open('/proc/self/statm') as f: pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20

def memory_child(arch, dataset, batch, method, options, steps):
    "In this (fresh) process: the extra peak memory of `steps` training steps, as a JSON line."
    torch.set_num_threads(1)
    info = dataset_info(dataset)
    torch.manual_seed(0)
    model = get_architecture(arch, dataset).train()
    objective = make_objective(method, options or None, sigma=0.25, num_classes=info.num_classes)
    x, y = torch.rand(batch, *info.input_shape), torch.randint(0, info.num_classes, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = rss_mib()
    for _ in range(steps): train_step(model, x, y, opt, objective)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10   # KiB on Linux
    print(json.dumps(dict(before=before, peak=peak, copies=objective.noisy_copies)))

def measure_memory(arch, dataset, batch, method, options, steps):
    "Run `memory_child` in a fresh single-threaded process; its result as a dict."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    args = [sys.executable, __file__, '--_child',
            json.dumps([arch, dataset, batch, method, options or '', steps])]
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode: raise RuntimeError(f"{arch} {method}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def memory_table(a):
    "Print the CPU memory table: extra peak RSS per method, and its ratio to Gaussian's."
    print(f"hardware: {hardware(torch.device('cpu')).rsplit(',', 1)[0]}, 1 thread per process; "
          f"torch {torch.__version__}; float32; σ = 0.25; batch {a.mem_batch}; "
          f"{a.mem_steps} steps; fresh process per row\n")
    print('| network | method | options | noisy copies | RSS before MiB | peak MiB | extra MiB | '
          'extra / gaussian\'s |')
    print('|---|---|---|---|---|---|---|---|')
    tmp = tempfile.TemporaryDirectory()
    for arch, dataset, _ in (c for c in CONFIGS if c[0] in a.archs.split(',')):
        base = None
        for method, options in DIGITS_COMPARISON.items():
            net, options, shown = method_setup(arch, dataset, method, options, tmp.name)
            m = measure_memory(net, dataset, a.mem_batch, method, options, a.mem_steps)
            extra = m['peak'] - m['before']
            base = base or extra
            print(f"| {arch} | {method} | {shown} | {m['copies']} | {m['before']:,.0f} | "
                  f"{m['peak']:,.0f} | {extra:,.0f} | {extra / base:.2f} |", flush=True)
    tmp.cleanup()

def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--_child':
        return memory_child(*json.loads(sys.argv[2]))
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='cpu'); p.add_argument('--steps', type=int, default=3)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--archs', default='small_cnn,cifar_resnet20')
    p.add_argument('--memory', action='store_true', help='CPU peak-memory table instead')
    p.add_argument('--mem_batch', type=int, default=32, help='batch of the memory table')
    p.add_argument('--mem_steps', type=int, default=2, help='training steps of the memory table')
    a = p.parse_args()
    if a.memory: return memory_table(a)
    device = resolve_device(a.device)
    amp = device.type == 'cuda'
    print(f"hardware: {hardware(device)}; torch {torch.__version__}; "
          f"{'bf16 + channels_last' if amp else 'float32'}; σ = 0.25\n")
    print('| network | method | options | images/s | relative to gaussian | peak MiB |')
    print('|---|---|---|---|---|---|')
    with tempfile.TemporaryDirectory() as tmp:
        for arch, dataset, batch in (c for c in CONFIGS if c[0] in a.archs.split(',')):
            base = None
            for method, options in DIGITS_COMPARISON.items():
                net, options, shown = method_setup(arch, dataset, method, options, tmp)
                r, peak = rate(net, dataset, batch, device, method, options, amp, a.steps,
                               a.repeats)
                base = base or r
                print(f"| {arch} | {method} | {shown} | {r:,.0f} | {r / base:.2f} | "
                      f"{'-' if peak != peak else f'{peak:,.0f}'} |", flush=True)

if __name__ == '__main__': main()
