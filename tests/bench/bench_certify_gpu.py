"""Certify throughput of `Smooth.certify` at the paper's scale, next to the model's forward floor.

    python tests/bench/bench_certify_gpu.py                                 # on a GPU: n = 100,000
    python tests/bench/bench_certify_gpu.py --n 500 --images 1 --device cpu # on a CPU: small n
    python tests/bench/bench_certify_gpu.py --memory              # peak memory, largest batch

Models (random weights: timing does not depend on them): ResNet-110 on 3x32x32 (CIFAR-10) and
torchvision's ResNet-50 on 3x224x224 (ImageNet), from `randsmooth.models.get_architecture`. Modes
(`Smooth`'s own defaults for every option a mode does not name):

- `fp32`:          NCHW, fp32 (`channels_last=False`);
- `channels_last`: fp32 numerics in the NHWC layout;
- `bf16`:          bfloat16 autocast (`amp='bf16'`) in channels_last;
- `compile`:       `torch.compile(model)` in channels_last, fp32;
- `compile_bf16`:  `torch.compile(model)` with bf16 autocast in channels_last.

For each, `--images` images are certified (n0 selection and n estimation draws, alpha = 0.001);
printed as a Markdown table: seconds per image, samples/s, and the *floor*: samples/s of bare
forward passes of the user's model in the same layout, precision and compilation, on one fixed
batch (no noise, no counting), measured in the same run. Goals (issue 17, at n = 100,000 with
bf16 + channels_last): <= 2 s per ImageNet image, <= 0.3 s per CIFAR-10 image, rate within 15% of
the floor (ratio >= 0.85); the fp32 default within 15% of the fp32 floor.

`--memory` instead measures the peak memory of one certify call at batch 1,000 and doubles the
batch until it no longer fits (or reaches `--max_batch`): the largest 1,000 * 2^k that fits.
`--jsonl PATH` appends one JSON object per row (the raw figures).
"""
import argparse, inspect, json, math, time
import torch

MODELS = {'resnet110': ('cifar_resnet110', 'cifar10', 10, (3, 32, 32)),
          'resnet50': ('resnet50', 'imagenet', 1000, (3, 224, 224)),
          'resnet20': ('cifar_resnet20', 'cifar10', 10, (3, 32, 32))}   # for dry runs on a CPU
MODES = {'fp32': dict(channels_last=False), 'channels_last': dict(channels_last=True),
         'bf16': dict(channels_last=True, amp='bf16'),
         'compile': dict(channels_last=True, compile=True),
         'compile_bf16': dict(channels_last=True, amp='bf16', compile=True)}
GOAL_SECONDS = {'resnet110': 0.3, 'resnet50': 2.0}   # s/image at n = 100,000, bf16, channels_last
GOAL_RATIO = 0.85


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def device_name(device):
    if device.type == 'cuda': return torch.cuda.get_device_name(device)
    return f'CPU, {torch.get_num_threads()} threads'


def smooth_options(opts):
    "The mode's options that this version of `Smooth` accepts (the rest of its defaults stay)."
    from randsmooth.smooth import Smooth
    accepted = inspect.signature(Smooth.__init__).parameters
    return {k: v for k, v in opts.items() if k in accepted}


def build(name, mode, device):
    "The model in the mode's layout (compiled if asked) and the `Smooth` options of the mode."
    from randsmooth.models import get_architecture
    arch, dataset, num_classes, shape = MODELS[name]
    torch.manual_seed(0)
    model = get_architecture(arch, dataset).to(device).eval()
    opts = dict(MODES[mode]); compiled = opts.pop('compile', False)
    if opts['channels_last']: model = model.to(memory_format=torch.channels_last)
    if compiled: model = torch.compile(model)
    return model, opts, num_classes, shape


def floor_throughput(model, shape, batch_size, device, opts, reps):
    "Samples/s of bare forward passes on one fixed batch, in the mode's layout and precision."
    batch = torch.rand(batch_size, *shape, device=device)
    if opts['channels_last']: batch = batch.contiguous(memory_format=torch.channels_last)
    amp = opts.get('amp') == 'bf16'
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    with torch.inference_mode(), autocast:
        for _ in range(2): model(batch).argmax(1)                 # warm-up (and compilation)
        sync(device)
        start = time.perf_counter()
        for _ in range(reps): model(batch).argmax(1)
        sync(device)
    return reps * batch_size / (time.perf_counter() - start)


def bench(name, mode, a, device):
    "One row: certify `a.images` images in `mode`, and the floor of the same model."
    from randsmooth.smooth import Smooth
    model, opts, num_classes, shape = build(name, mode, device)
    batch_size = min(a.batch or (4000 if name == 'resnet110' else 1000), a.n)
    floor = floor_throughput(model, shape, batch_size, device, opts, a.floor_reps)
    smooth = Smooth(model, num_classes, 0.25, **smooth_options(opts))
    xs = torch.rand(a.images + 1, *shape, device=device)
    smooth.certify(xs[0], a.n0, min(a.n, 2 * batch_size), 0.001, batch_size, seed=0)   # warm-up
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    sync(device); start = time.perf_counter()
    for i, x in enumerate(xs[1:]): smooth.certify(x, a.n0, a.n, 0.001, batch_size, seed=i)
    sync(device)
    seconds = (time.perf_counter() - start) / a.images
    rate = (a.n0 + a.n) / seconds
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else math.nan
    return dict(model=name, mode=mode, smooth=repr(smooth), n0=a.n0, n=a.n, images=a.images,
                batch=batch_size, seconds=seconds, rate=rate, floor=floor, ratio=rate / floor,
                peak_gib=peak)


def goal(r):
    "Whether a row meets issue 17's goal for its mode (scaled to its n), or '' when none is set."
    if r['mode'] == 'fp32': return 'met' if r['ratio'] >= GOAL_RATIO else 'missed'
    if r['mode'] != 'bf16' or r['model'] not in GOAL_SECONDS: return ''
    fast = r['seconds'] <= GOAL_SECONDS[r['model']] * (r['n0'] + r['n']) / 100_100
    return 'met' if fast and r['ratio'] >= GOAL_RATIO else 'missed'


def fits(smooth, x, batch, device):
    "Peak GiB of one certify call with n = batch draws in one pass; None when out of memory."
    if device.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(device)
    try: smooth.certify(x, 100, batch, 0.001, batch, seed=0)
    except torch.cuda.OutOfMemoryError: return None
    finally: sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else math.nan


def memory(name, mode, a, device):
    "Peak memory at batch 1,000 and the largest batch 1,000 * 2^k (<= a.max_batch) that fits."
    from randsmooth.smooth import Smooth
    model, opts, num_classes, shape = build(name, mode, device)
    smooth = Smooth(model, num_classes, 0.25, **smooth_options(opts))
    x = torch.rand(*shape, device=device)
    at_1000 = fits(smooth, x, 1000, device)
    largest, peak, batch = (1000, at_1000, 2000) if at_1000 is not None else (None, None, 0)
    while largest and batch <= a.max_batch:
        got = fits(smooth, x, batch, device)
        if got is None: break
        largest, peak, batch = batch, got, batch * 2
    if device.type == 'cuda': torch.cuda.empty_cache()
    capped = bool(largest) and batch > a.max_batch
    return dict(model=name, mode=mode, smooth=repr(smooth), peak_gib_at_1000=at_1000,
                largest_batch=largest, peak_gib_at_largest=peak, capped_by_max_batch=capped)


def rows(fn, a, device, out):
    "Yield `fn(name, mode, a, device)` for each model and mode; a row that raises is printed so."
    for name in a.models:
        for mode in a.modes:
            try: r = fn(name, mode, a, device)
            except Exception as e:           # one failing mode must not lose the others' figures
                msg = ' '.join(f'{type(e).__name__}: {e}'.split())[:300]
                out(dict(model=name, mode=mode, error=msg))
                print(f'| {name} | {mode} | error: {msg} |', flush=True)
                continue
            finally:
                if device.type == 'cuda': torch.cuda.empty_cache()
                if hasattr(torch, '_dynamo'): torch._dynamo.reset()
            out(r)
            yield r


def fmt(v, spec):
    return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def run_throughput(a, device, out):
    print(f'Certify throughput on {device_name(device)}, torch {torch.__version__}: '
          f'n0 = {a.n0}, n = {a.n:,}, {a.images} image(s) per row, '
          f'floor over {a.floor_reps} passes\n')
    print('| model | mode | batch | s/image | samples/s | floor samples/s | floor s/image '
          '| of floor | peak GiB | goal |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---|')
    for r in rows(bench, a, device, out):
        print(f"| {r['model']} | {r['mode']} | {r['batch']} | {r['seconds']:.3f} "
              f"| {r['rate']:,.0f} "
              f"| {r['floor']:,.0f} | {(a.n0 + a.n) / r['floor']:.3f} | {r['ratio']:.2f} "
              f"| {fmt(r['peak_gib'], '.2f')} | {goal(r)} |", flush=True)


def run_memory(a, device, out):
    if device.type == 'cuda': torch.backends.cudnn.benchmark = False   # no autotuning workspaces
    print(f'Peak memory of one certify call (n0 = 100, n = batch) on {device_name(device)}\n')
    print('| model | mode | peak GiB at batch 1,000 | largest batch that fits | peak GiB there |')
    print('|---|---|---:|---:|---:|')
    for r in rows(memory, a, device, out):
        largest = fmt(r['largest_batch'], ',d') + (' (cap)' if r['capped_by_max_batch'] else '')
        print(f"| {r['model']} | {r['mode']} | {fmt(r['peak_gib_at_1000'], '.2f')} | {largest} "
              f"| {fmt(r['peak_gib_at_largest'], '.2f')} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n0', type=int, default=100)
    p.add_argument('--n', type=int, default=100_000)
    p.add_argument('--batch', type=int, default=None,
                   help='draws per forward pass (default 4000 for ResNet-110, 1000 for ResNet-50)')
    p.add_argument('--images', type=int, default=1, help='images certified per row')
    p.add_argument('--floor_reps', type=int, default=None,
                   help='forward passes timed for the floor (default: 20 on GPU, 2 on CPU)')
    p.add_argument('--models', nargs='+', default=['resnet110', 'resnet50'], choices=list(MODELS))
    p.add_argument('--modes', nargs='+', default=['fp32', 'channels_last', 'bf16', 'compile_bf16'],
                   choices=list(MODES))
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--memory', action='store_true', help='measure peak memory instead of speed')
    p.add_argument('--max_batch', type=int, default=256_000,
                   help='with --memory: largest batch tried')
    p.add_argument('--jsonl', default=None, help='append one JSON line per row to this file')
    a = p.parse_args(argv)
    device = torch.device(a.device)
    a.floor_reps = a.floor_reps or (20 if device.type == 'cuda' else 2)
    if device.type == 'cuda': torch.backends.cudnn.benchmark = True
    def out(row):
        if a.jsonl:
            row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            line = json.dumps(dict(row, device=device_name(device)))
            with open(a.jsonl, 'a') as f: f.write(line + '\n')
    (run_memory if a.memory else run_throughput)(a, device, out)


if __name__ == '__main__': main()
