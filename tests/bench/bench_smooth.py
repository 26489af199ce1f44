"""CPU benchmark of one CERTIFY: reference, Python default, each mode, the commands' default.

All side by side in one run:

    .venv/bin/python tests/bench/bench_smooth.py                      # n0=100, n=10,000, batch 1000
    .venv/bin/python tests/bench/bench_smooth.py --n 2000 --rounds 1  # quicker
    .venv/bin/python tests/bench/bench_smooth.py --threads 1          # on a busy machine
    # the table of notebook 11 (nbs/11_fast.ipynb reads it):
    OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_smooth.py --threads 1 \
        --out nbs/data/bench_smooth.csv

For each model (a small CNN and a CIFAR ResNet-20; 3x32x32 inputs, random weights: timing does not
depend on them) it times, each in its own process (a fresh process per contender and round, as a
command runs):

- `reference`:      the algorithm of Cohen et al. (2019) as their reference implementation runs it,
                    written here from the paper: fp32, NCHW, under `torch.no_grad()`, batches of
                    `x.repeat(b, 1, 1, 1)` plus `sigma * torch.randn_like(...)`, `argmax`, counts
                    with `np.bincount` on the host; n0 draws to select, n draws to estimate, the
                    Clopper-Pearson bound;
- `smooth`:         the Python default: `Smooth(model, 10, sigma).certify(...)` on the live module
                    as given (channels_last inputs, inference mode, reused buffers, device counts);
- `inference_copy`: the same on `randsmooth.fast.inference_copy(model, probe)` (made before the
                    clock starts);
- `compile`:        the same on `torch.compile(model)` (compile time excluded: one certify runs
                    first);
- `bf16`:           `Smooth(model, ..., amp='bf16')` (certifies the bf16 network);
- `command`:        the commands' default: `randsmooth.fast.command_model(model, x, n_draws=n0 + n,
                    ...)` and `Smooth` on what it returns, the clock running from the loaded model
                    (the fold, the compile measurement and any compile count), with this
                    process's freed memory kept for reuse (`reuse_freed_memory`);
- `command_no_reuse`: the same with `reuse_memory=False`: what keeping freed memory is worth;
- `forward_cl`:     the model's own forward passes of the same n0 + n inputs in channels_last under
                    inference mode: the floor for `smooth`.

Every process warms the model up with two forward passes first. Contenders alternate within each
round, the fastest of the rounds is kept, and speed is reported relative to `reference` from wall
time and from CPU time (which other jobs on a shared machine distort less). `--out` writes the
table as CSV: comment lines (`#`: the command, the machine, the settings) then one row per model
and contender; read it with `pandas.read_csv(path, comment='#')`.
"""
import argparse, io, json, os, resource, shlex, subprocess, sys, time
import numpy as np
import torch

SIGMA, ALPHA, NUM_CLASSES = 0.25, 0.001, 10
MODELS = {'small_cnn': 'small_cnn', 'resnet20': 'cifar_resnet20'}
CONTENDERS = ['reference', 'smooth', 'inference_copy', 'compile', 'bf16', 'command',
              'command_no_reuse', 'forward_cl']

def reference_counts(model, x, num, batch_size):
    "Class counts of `model` on `num` noisy copies of x, in batches: randn_like, argmax, bincount."
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for start in range(0, num, batch_size):
        batch = x.repeat((min(batch_size, num - start), 1, 1, 1))
        noisy = batch + SIGMA * torch.randn_like(batch)
        counts += np.bincount(model(noisy).argmax(1).numpy(),
                              minlength=NUM_CLASSES)
    return counts

def reference_certify(model, x, n0, n, alpha, batch_size):
    "CERTIFY (Cohen et al., 2019, Section 3.2): select with n0 draws, bound pA with n draws."
    from scipy.stats import beta, norm
    with torch.no_grad():
        cA = int(reference_counts(model, x, n0, batch_size).argmax())
        nA = int(reference_counts(model, x, n, batch_size)[cA])
    pA = beta.ppf(alpha, nA, n - nA + 1) if nA > 0 else 0.0   # Clopper-Pearson, one-sided
    return (-1, 0.0) if pA < 0.5 else (cA, SIGMA * norm.ppf(pA))

def forward_only(model, x, n0, n, batch_size, channels_last):
    "Forward passes over n0 + n copies of x in the certify's batch sizes: the model's own cost."
    sizes = [min(batch_size, n0 - i) for i in range(0, n0, batch_size)] + \
            [min(batch_size, n - i) for i in range(0, n, batch_size)]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = {b: x.repeat((b, 1, 1, 1)).contiguous(memory_format=fmt) for b in set(sizes)}
    with (torch.inference_mode() if channels_last else torch.no_grad()):
        for b in sizes: model(batches[b]).argmax(1)

def cpu_name():
    "The CPU's model name and whether it has bfloat16 instructions (from /proc/cpuinfo)."
    try: info = open('/proc/cpuinfo').read()
    except OSError: return 'unknown'
    names = (l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith('model name'))
    name = next(names, 'unknown')
    bf16 = [f for f in ('avx512_bf16', 'amx_bf16') if f in info.split()]
    return f"{name} ({', '.join(bf16) if bf16 else 'no AVX512-BF16/AMX'}), {os.cpu_count()} cores"

def worker(model_name, contender, n0, n, batch_size, threads):
    "Time one contender in this process; print a JSON line."
    torch.set_num_threads(threads)
    from randsmooth.models import get_architecture
    from randsmooth.smooth import Smooth
    from randsmooth import fast
    torch.manual_seed(0)
    model, x = get_architecture(MODELS[model_name], 'cifar10').eval(), torch.rand(3, 32, 32)
    forward_only(model, x, 0, 2 * batch_size, batch_size, contender != 'reference')  # warm-up
    def certify(f, **kw):
        return Smooth(f, NUM_CLASSES, SIGMA, **kw).certify(x, n0, n, ALPHA, batch_size, seed=0)
    what = None
    if contender == 'inference_copy':
        model = fast.inference_copy(model, x + SIGMA * torch.randn(64, *x.shape))
    if contender == 'compile': model = torch.compile(model); certify(model)
    def command(reuse_memory=True):
        nonlocal what
        f, what = fast.command_model(model, x, n_draws=n0 + n, batch_size=batch_size, sigma=SIGMA,
                                     reuse_memory=reuse_memory)
        return certify(f, channels_last=what['channels_last'], amp=what['amp'])
    run = {'reference': lambda: reference_certify(model, x, n0, n, ALPHA, batch_size),
           'smooth': lambda: certify(model), 'inference_copy': lambda: certify(model),
           'compile': lambda: certify(model), 'bf16': lambda: certify(model, amp='bf16'),
           'command': command, 'command_no_reuse': lambda: command(reuse_memory=False),
           'forward_cl': lambda: forward_only(model, x, n0, n, batch_size, True)}[contender]
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    start, start_cpu = time.perf_counter(), cpu()
    run()
    seconds, cpu_seconds = time.perf_counter() - start, cpu() - start_cpu
    print(json.dumps(dict(model=model_name, contender=contender, seconds=seconds,
                          cpu_seconds=cpu_seconds, what=what)))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n0', type=int, default=100); p.add_argument('--n', type=int, default=10_000)
    p.add_argument('--batch', type=int, default=1000)
    p.add_argument('--rounds', type=int, default=3, help='alternating rounds; the fastest is kept')
    p.add_argument('--threads', type=int, default=2, help='torch threads per process')
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    p.add_argument('--contenders', nargs='+', default=CONTENDERS, choices=CONTENDERS)
    p.add_argument('--json', help='also write the results to this file')
    p.add_argument('--out', help='also write the table to this CSV file (notebook 11 reads it)')
    p.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker: return worker(*a.worker, a.n0, a.n, a.batch, a.threads)
    load = os.getloadavg()[0]
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {a.threads} thread(s) per process; "
          f"load average {load:.1f}\n"
          f"n0={a.n0}, n={a.n}, batch={a.batch}, one 3x32x32 image, best of {a.rounds} rounds",
          flush=True)
    best = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    for r in range(a.rounds):
        for model in a.models:
            for contender in a.contenders:
                out = subprocess.run([sys.executable, __file__, '--worker', model, contender,
                                      '--n0', str(a.n0), '--n', str(a.n), '--batch', str(a.batch),
                                      '--threads', str(a.threads)],
                                     capture_output=True, text=True, env=env)
                if out.returncode: sys.exit(f"{model} {contender} failed:\n{out.stderr}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                what = ' ' + ','.join(k for k, v in res['what'].items() if v) if res['what'] else ''
                print(f"  round {r} {model:10s} {contender:17s} {res['seconds']:7.2f} s "
                      f"({res['cpu_seconds']:.2f} s CPU){what}", flush=True)
                key = (model, contender)
                if key not in best or res['seconds'] < best[key]['seconds']: best[key] = res
    print(f"\nbest of {a.rounds}; speed = reference's time / contender's "
          f"(wall; CPU time in brackets)")
    print(f"{'contender':17s}" + ''.join(f"{m:>26s}" for m in a.models))
    for contender in a.contenders:
        cells = []
        for m in a.models:
            r, ref = best.get((m, contender)), best.get((m, 'reference'))
            if r is None or ref is None: cells.append(f"{'-':>26s}"); continue
            cells.append(f"{r['seconds']:6.2f} s {ref['seconds'] / r['seconds']:5.2f}x "
                         f"({ref['cpu_seconds'] / r['cpu_seconds']:.2f}x)".rjust(26))
        print(f"{contender:17s}" + ''.join(cells))
    if a.json:
        with open(a.json, 'w') as f: json.dump(list(best.values()), f, indent=1)
    if a.out: write_csv(a, best, load)

def write_csv(a, best:dict, load:float):
    "The table as CSV, with the command, the machine and the settings in `#` lines at its top."
    import pandas as pd
    from randsmooth.files import atomic_write
    rows = []
    for (model, contender), r in best.items():
        ref = best.get((model, 'reference'))
        what = ','.join(k for k, v in (r['what'] or {}).items() if v and k != 'amp')
        rows.append(dict(model=model, contender=contender, seconds=r['seconds'],
                         cpu_seconds=r['cpu_seconds'],
                         speed=ref['seconds'] / r['seconds'] if ref else float('nan'),
                         cpu_speed=ref['cpu_seconds'] / r['cpu_seconds'] if ref else float('nan'),
                         what=what))
    command = ' '.join(shlex.quote(x) for x in ['python', 'tests/bench/bench_smooth.py',
                                                 *sys.argv[1:]])
    head = (f"# command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {command}\n"
            f"# machine: {cpu_name()}; torch {torch.__version__}; {a.threads} thread(s) per "
            f"process; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n"
            f"# certify of one 3x32x32 image: n0={a.n0}, n={a.n}, batch={a.batch}, "
            f"alpha={ALPHA}, sigma={SIGMA}; fastest of {a.rounds} alternating rounds, each "
            f"contender in a fresh process; speed = reference's seconds / contender's\n")
    buf = io.StringIO(); pd.DataFrame(rows).to_csv(buf, index=False, float_format='%.4g')
    atomic_write(a.out, head + buf.getvalue())
    print(f"wrote {a.out}")

if __name__ == '__main__': main()
