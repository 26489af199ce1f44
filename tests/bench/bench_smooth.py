"""CPU benchmark of `Smooth.certify` against the paper's pseudocode written plainly.

    .venv/bin/python tests/bench/bench_smooth.py                    # ResNet-20 and a small CNN, n0=100, n=10,000, batch 1000
    .venv/bin/python tests/bench/bench_smooth.py --n 2000 --reps 1  # quicker

For each model (3x32x32 inputs, random weights: timing does not depend on them) it times, in separate processes so
that each has its own peak memory:

- `plain`:      the pseudocode as the reference implementation writes it: fp32, NCHW, under `torch.no_grad()`, a loop
                of `model(x.repeat(b, 1, 1, 1) + sigma * torch.randn(b, *x.shape))`, predictions counted on the host;
- `smooth`:     `randsmooth.smooth.Smooth(model, 10, sigma).certify(x, n0, n, alpha, batch)` with its defaults
                (the model as given, fp32: channels_last, inference mode, reused buffers, counts on the device);
- `fast`:       the same on `randsmooth.fast.inference_copy(model, probe)` (opt-in: batch norm folded, safe ReLUs
                in place, checked on a probe batch);
- `forward`:    plain forward passes (fp32, NCHW, no_grad) of the same n0 + n inputs, batch by batch: the model's cost;
- `forward_cl`: the same forward passes in channels_last under inference mode: the floor for `smooth`;
- with `--modes ... bf16 compile`: `Smooth(..., amp='bf16')` and `Smooth(torch.compile(model))` (opt-in modes;
                compile time is excluded: one certify runs before the clock starts).

Methods alternate within each repetition and the fastest repetition is kept (the machine may be shared). Printed:
seconds per image (wall and CPU), samples/s, speed relative to `forward` and to `plain` (from wall time, and from
CPU time, which a busy machine distorts less), and the peak resident memory each process added over the loaded model.
"""
import argparse, json, os, resource, subprocess, sys, time
import numpy as np
import torch

SIGMA, ALPHA, NUM_CLASSES = 0.25, 0.001, 10
MODELS = {'resnet20': 'cifar_resnet20', 'small_cnn': 'small_cnn'}

def plain_sample(model, x, num, batch_size):
    "The reference implementation's `_sample_noise`: repeat, add fresh noise, classify, count on the host."
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    remaining = num
    while remaining > 0:
        b = min(batch_size, remaining); remaining -= b
        batch = x.repeat((b, 1, 1, 1))
        noise = torch.randn_like(batch) * SIGMA
        counts += np.bincount(model(batch + noise).argmax(1).numpy(), minlength=NUM_CLASSES)
    return counts

def plain_certify(model, x, n0, n, alpha, batch_size):
    "The reference implementation's `certify`."
    from statsmodels.stats.proportion import proportion_confint
    from scipy.stats import norm
    with torch.no_grad():
        cA = plain_sample(model, x, n0, batch_size).argmax()
        nA = plain_sample(model, x, n, batch_size)[cA]
    pA = proportion_confint(nA, n, alpha=2 * alpha, method='beta')[0]
    return (-1, 0.0) if pA < 0.5 else (int(cA), SIGMA * norm.ppf(pA))

def forward_only(model, x, n0, n, batch_size, channels_last):
    "Forward passes over n0 + n copies of x in the certify's batch sizes: the cost of the model alone."
    sizes = [min(batch_size, n0 - i) for i in range(0, n0, batch_size)] + [min(batch_size, n - i) for i in range(0, n, batch_size)]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = {b: x.repeat((b, 1, 1, 1)).contiguous(memory_format=fmt) for b in set(sizes)}
    with (torch.inference_mode() if channels_last else torch.no_grad()):
        for b in sizes: model(batches[b]).argmax(1)

def cpu_name():
    "The CPU's model name, as /proc/cpuinfo gives it, and whether it has bfloat16 instructions."
    try: info = open('/proc/cpuinfo').read()
    except OSError: return 'unknown'
    name = next((l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith('model name')), 'unknown')
    return name + (' (avx512_bf16)' if 'avx512_bf16' in info else '') + f', {os.cpu_count()} cores'

def current_rss_mb():
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

def worker(model_name, method, n0, n, batch_size, images):
    "Time one method in this process; print a JSON line."
    from randsmooth.models import get_architecture
    from randsmooth.smooth import Smooth
    torch.manual_seed(0)
    model = get_architecture(MODELS[model_name], 'cifar10').eval()
    xs = torch.rand(images, 3, 32, 32)
    if method == 'compile': model = torch.compile(model)
    if method == 'fast':
        from randsmooth.fast import inference_copy
        model = inference_copy(model, xs[0] + SIGMA * torch.randn(64, *xs.shape[1:]))
    run = {'plain': lambda x, i: plain_certify(model, x, n0, n, ALPHA, batch_size),
           'forward': lambda x, i: forward_only(model, x, n0, n, batch_size, False),
           'forward_cl': lambda x, i: forward_only(model, x, n0, n, batch_size, True),
           'smooth': lambda x, i: Smooth(model, NUM_CLASSES, SIGMA).certify(x, n0, n, ALPHA, batch_size, seed=i),
           'fast': lambda x, i: Smooth(model, NUM_CLASSES, SIGMA).certify(x, n0, n, ALPHA, batch_size, seed=i),
           'bf16': lambda x, i: Smooth(model, NUM_CLASSES, SIGMA, amp='bf16').certify(x, n0, n, ALPHA, batch_size, seed=i),
           'compile': lambda x, i: Smooth(model, NUM_CLASSES, SIGMA).certify(x, n0, n, ALPHA, batch_size, seed=i)}[method]
    base_rss = current_rss_mb()
    run(xs[0], 0) if method == 'compile' else forward_only(model, xs[0], 0, 2 * batch_size, batch_size, method != 'plain')  # warm-up
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    start, start_cpu = time.perf_counter(), cpu()
    for i, x in enumerate(xs): run(x, i)
    seconds, cpu_seconds = (time.perf_counter() - start) / images, (cpu() - start_cpu) / images
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(model=model_name, method=method, seconds=seconds, cpu_seconds=cpu_seconds, peak_mb=peak - base_rss)))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n0', type=int, default=100); p.add_argument('--n', type=int, default=10_000)
    p.add_argument('--batch', type=int, default=1000); p.add_argument('--images', type=int, default=1)
    p.add_argument('--reps', type=int, default=2, help='repetitions; the fastest is kept')
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    p.add_argument('--modes', nargs='+', default=['plain', 'smooth', 'fast', 'forward', 'forward_cl'],
                   choices=['plain', 'smooth', 'fast', 'forward', 'forward_cl', 'bf16', 'compile'])
    p.add_argument('--json', help='also write the results to this file')
    p.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker: return worker(*a.worker, a.n0, a.n, a.batch, a.images)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads\n"
          f"n0={a.n0}, n={a.n}, batch={a.batch}, {a.images} image(s) per process, best of {a.reps}",
          flush=True)
    best = {}
    for rep in range(a.reps):
        for model in a.models:
            for method in a.modes:
                out = subprocess.run([sys.executable, __file__, '--worker', model, method, '--n0', str(a.n0), '--n', str(a.n),
                                      '--batch', str(a.batch), '--images', str(a.images)], capture_output=True, text=True)
                if out.returncode: sys.exit(f"{model} {method} failed:\n{out.stderr}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"  rep {rep} {model:10s} {method:10s} {r['seconds']:8.2f} s ({r['cpu_seconds']:.2f} s CPU)", flush=True)
                key = (model, method)
                if key not in best or r['seconds'] < best[key]['seconds']: best[key] = r
    samples = a.n0 + a.n
    print(f"\nbest of {a.reps}; 'vs X' = speed relative to X (wall time; CPU time in brackets);\n"
          f"peak MB = resident memory added")
    print(f"{'model':10s} {'method':10s} {'s/image':>8s} {'CPU s':>7s} {'samples/s':>10s} {'vs forward':>16s} {'vs plain':>16s} {'peak MB':>8s}")
    for (model, method), r in best.items():
        rate = samples / r['seconds']
        rel = lambda m: (f"{best[(model, m)]['seconds'] / r['seconds']:.2f}x ({best[(model, m)]['cpu_seconds'] / r['cpu_seconds']:.2f}x)"
                         if (model, m) in best else '-')
        print(f"{model:10s} {method:10s} {r['seconds']:8.2f} {r['cpu_seconds']:7.2f} {rate:10.0f} {rel('forward'):>16s} {rel('plain'):>16s} {r['peak_mb']:8.0f}")
    if a.json:
        with open(a.json, 'w') as f: json.dump([dict(r, samples_per_s=samples / r['seconds']) for r in best.values()], f, indent=1)

if __name__ == '__main__': main()
