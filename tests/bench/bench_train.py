"""Images/s of one training step of randsmooth.train — the objective (by default the paper's:
noise drawn on the device, forward pass, cross-entropy), backward pass, SGD step — for the
architectures the paper trains, in float32 NCHW and in bfloat16 autocast + channels_last (CPUs with
AVX512-BF16 or AMX run bfloat16 natively; `--modes` also offers each change alone).

    python tests/bench/bench_train.py                       # CPU: the digits CNN and a ResNet-20
    python tests/bench/bench_train.py --device cuda         # GPU: also ResNet-110 and ResNet-50
    python tests/bench/bench_train.py --method consistency  # another objective (randsmooth.methods)

Inputs are random tensors of the datasets' shapes (no data needed); the timed loop is
`train_step` itself, so the figures are those of `rs_train` minus data loading. Prints a markdown
table that names the device.
"""
import argparse, time
import torch
from randsmooth.models import get_architecture
from randsmooth.data import dataset_info
from randsmooth.methods import make_objective
from randsmooth.runtime import resolve_device
from randsmooth.train import train_step

# (architecture, dataset, batch): CPU runs the first two; a GPU all four
CONFIGS = [('small_cnn', 'digits', 256), ('cifar_resnet20', 'cifar10', 128),
           ('cifar_resnet110', 'cifar10', 400), ('resnet50', 'imagenet', 128)]
MODES = {'fp32-nchw': (None, False), 'bf16-channels_last': (torch.bfloat16, True),  # the default
         'fp32-channels_last': (None, True), 'bf16-nchw': (torch.bfloat16, False)}  # one change

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)

def images_per_second(arch, dataset, batch, device, amp_dtype, channels_last, steps, warmup,
                      repeats, objective):
    "Throughput of the fastest of `repeats` rounds of `steps` timed steps, on fixed random inputs."
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = get_architecture(arch, dataset).to(device, memory_format=fmt).train()
    info = dataset_info(dataset)
    x = torch.rand(batch, *info.input_shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, info.num_classes, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(warmup): train_step(model, x, y, opt, objective, amp_dtype)
    best = float('inf')
    for _ in range(repeats):   # the fastest round: the least disturbed by other processes
        sync(device); tic = time.perf_counter()
        for _ in range(steps): loss, _ = train_step(model, x, y, opt, objective, amp_dtype)
        loss.item(); sync(device)
        best = min(best, time.perf_counter() - tic)
    return batch * steps / best

def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument('--steps', type=int, default=None, help='timed steps (default: 20 GPU, 5 CPU)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps (default: 5 GPU, 1 CPU)')
    p.add_argument('--repeats', type=int, default=3, help='timed rounds; the fastest is reported')
    p.add_argument('--modes', default=None,
                   help=f"comma-separated, from {', '.join(MODES)} (default: the first two)")
    p.add_argument('--archs', default=None, help='comma-separated (default: 4 on GPU, 2 on CPU)')
    p.add_argument('--threads', type=int, default=None, help='CPU threads (torch.set_num_threads)')
    p.add_argument('--method', default='gaussian', help='training objective (default: gaussian)')
    p.add_argument('--method_options', default=None, help='its options, "name=value,name=value"')
    p.add_argument('--sigma', type=float, default=0.25, help='noise level σ')
    return p, p.parse_args()

def main():
    p, a = parse_args()
    device = resolve_device(a.device)
    gpu = device.type == 'cuda'
    if a.threads: torch.set_num_threads(a.threads)
    if gpu: torch.backends.cudnn.benchmark = True
    steps = a.steps or (20 if gpu else 5)
    warmup = a.warmup if a.warmup is not None else (5 if gpu else 1)
    modes = a.modes.split(',') if a.modes else ['fp32-nchw', 'bf16-channels_last']
    unknown = set(modes) - set(MODES)
    if unknown: p.error(f"--modes: unknown {sorted(unknown)}; valid: {', '.join(MODES)}")
    archs = a.archs.split(',') if a.archs else [c[0] for c in CONFIGS[:4 if gpu else 2]]
    configs = [c for c in CONFIGS if c[0] in archs]
    name = torch.cuda.get_device_name(device) if gpu else f'CPU, {torch.get_num_threads()} threads'
    print(f"device: {name}; torch {torch.__version__}; method {a.method} {a.method_options or ''}; "
          f"σ = {a.sigma}; best of {a.repeats} rounds of {steps} timed steps after {warmup} "
          "warm-up\n")
    speedup = len(modes) > 1
    print('| architecture | input | batch | ' + ' | '.join(f'{m} img/s' for m in modes)
          + (' | speed-up |' if speedup else ' |'))
    print('|---|---|---|' + '---|' * len(modes) + ('---|' if speedup else ''))
    for arch, dataset, batch in configs:
        info = dataset_info(dataset)
        objective = make_objective(a.method, a.method_options, sigma=a.sigma,
                                   num_classes=info.num_classes)
        rates = [images_per_second(arch, dataset, batch, device, *MODES[m], steps, warmup,
                                   a.repeats, objective) for m in modes]
        cells = ' | '.join(f'{r:,.0f}' for r in rates)
        shape = '×'.join(map(str, info.input_shape))
        ratio = f' {rates[-1] / rates[0]:.2f}× |' if speedup else ''
        print(f'| {arch} | {shape} | {batch} | {cells} |' + ratio, flush=True)

if __name__ == '__main__': main()
