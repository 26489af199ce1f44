"""Certification throughput of `Smooth.certify` at the paper's scale, in every mode, next to the model's floor.

    .venv/bin/python tests/bench/bench_certify_gpu.py                       # on a GPU: n = 100,000
    .venv/bin/python tests/bench/bench_certify_gpu.py --n 500 --images 1    # on a CPU: small n

Models (random weights: timing does not depend on them): ResNet-110 on 3x32x32 (CIFAR-10) and torchvision's
ResNet-50 on 3x224x224 (ImageNet), from `randsmooth.models.get_architecture`. Modes:

- `fp32`:         NCHW, fp32 (`channels_last=False`);
- `channels_last`: fp32 numerics in the NHWC layout (the default on image models);
- `bf16`:         bfloat16 autocast (`amp='bf16'`) in channels_last;
- `compile`:      `torch.compile(model)` in channels_last, fp32;
- `compile_bf16`: `torch.compile(model)` with bf16 autocast in channels_last.

For each, the script certifies `--images` images (n0 = 100 selection and n estimation draws, alpha = 0.001) and
prints seconds per image, samples/s, and the *floor*: the samples/s of bare forward passes of the same model, in
the same mode, on one fixed batch (no noise, no counting). Goal on one H100: under 1 s per CIFAR-10 image and under
5 s per ImageNet image at n = 100,000, and certification within 10% of the floor (ratio >= 0.90).
"""
import argparse, time
import torch

MODELS = {'resnet110': ('cifar_resnet110', 'cifar10', 10, (3, 32, 32)), 'resnet50': ('resnet50', 'imagenet', 1000, (3, 224, 224))}
MODES = {'fp32': dict(channels_last=False), 'channels_last': dict(channels_last=True), 'bf16': dict(channels_last=True, amp='bf16'),
         'compile': dict(channels_last=True, compile=True), 'compile_bf16': dict(channels_last=True, amp='bf16', compile=True)}
GOAL_SECONDS = {'resnet110': 1.0, 'resnet50': 5.0}

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)

def floor_throughput(model, shape, batch_size, device, channels_last, amp, reps):
    "Samples/s of bare forward passes on one fixed batch, in the given mode."
    batch = torch.rand(batch_size, *shape, device=device)
    if channels_last: batch = batch.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == 'bf16')
    with torch.inference_mode(), autocast:
        for _ in range(2): model(batch).argmax(1)                 # warm-up (and compilation)
        sync(device)
        start = time.perf_counter()
        for _ in range(reps): model(batch).argmax(1)
        sync(device)
    return reps * batch_size / (time.perf_counter() - start)

def bench(name, mode, a, device):
    from randsmooth.models import get_architecture
    from randsmooth.smooth import Smooth
    arch, dataset, num_classes, shape = MODELS[name]
    torch.manual_seed(0)
    model = get_architecture(arch, dataset).to(device).eval()
    opts = dict(MODES[mode]); compiled = opts.pop('compile', False)
    if opts['channels_last']: model = model.to(memory_format=torch.channels_last)
    if compiled: model = torch.compile(model)
    batch_size = a.batch or (2000 if name == 'resnet110' else 500)
    batch_size = min(batch_size, a.n)
    floor = floor_throughput(model, shape, batch_size, device, opts['channels_last'], opts.get('amp'), a.floor_reps)
    smooth = Smooth(model, num_classes, 0.25, **opts)
    xs = torch.rand(a.images + 1, *shape, device=device)
    smooth.certify(xs[0], a.n0, min(a.n, 2 * batch_size), 0.001, batch_size, seed=0)   # warm-up: every batch size once
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    sync(device); start = time.perf_counter()
    for i, x in enumerate(xs[1:]): smooth.certify(x, a.n0, a.n, 0.001, batch_size, seed=i)
    sync(device)
    seconds = (time.perf_counter() - start) / a.images
    rate = (a.n0 + a.n) / seconds
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else float('nan')
    return dict(model=name, mode=mode, batch=batch_size, seconds=seconds, rate=rate, floor=floor, peak_gib=peak)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n0', type=int, default=100); p.add_argument('--n', type=int, default=100_000)
    p.add_argument('--batch', type=int, default=None, help='draws per forward pass (default 2000 for ResNet-110, 500 for ResNet-50)')
    p.add_argument('--images', type=int, default=3, help='images certified per measurement')
    p.add_argument('--floor_reps', type=int, default=None, help='forward passes timed for the floor (default: 20 on GPU, 2 on CPU)')
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    p.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES))
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a = p.parse_args()
    device = torch.device(a.device)
    a.floor_reps = a.floor_reps or (20 if device.type == 'cuda' else 2)
    if device.type == 'cuda': torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f"torch {torch.__version__} on {name}; n0={a.n0}, n={a.n}, {a.images} image(s) per measurement", flush=True)
    head = f"{'model':10s} {'mode':13s} {'batch':>6s} {'s/image':>9s} {'samples/s':>10s} {'floor/s':>10s} {'of floor':>8s} {'peak GiB':>8s}  goal"
    print(head, flush=True)
    for name in a.models:
        for mode in a.modes:
            r = bench(name, mode, a, device)
            ok = r['seconds'] < GOAL_SECONDS[name] * a.n / 100_000 and r['rate'] >= 0.9 * r['floor']
            print(f"{r['model']:10s} {r['mode']:13s} {r['batch']:6d} {r['seconds']:9.3f} {r['rate']:10.0f} {r['floor']:10.0f} "
                  f"{r['rate'] / r['floor']:8.2f} {r['peak_gib']:8.2f}  {'met' if ok else 'missed'}", flush=True)

if __name__ == '__main__': main()
