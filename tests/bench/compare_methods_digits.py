"""Issue 22's comparison of the training methods, as data: every method of `randsmooth.methods`
(`DIGITS_COMPARISON`, with `DIGITS_RECIPES`) trained on digits at each σ with several seeds, each
smoothed classifier certified on the same test digits; one CSV row per (σ, method, seed) with the
certified accuracy at several radii, the ACR, the training seconds and the cost relative to
Gaussian training. Notebook 06 draws its table and plot from the CSV this writes.

    # writes nbs/data/methods_digits.csv:
    OMP_NUM_THREADS=1 python tests/bench/compare_methods_digits.py
    python tests/bench/compare_methods_digits.py --seeds 0 --sigmas 0.25 --epochs 3 --out /tmp/m.csv

The CSV starts with comment lines (`#`): the command that made it, the machine, torch and the
wall time; read it with `pandas.read_csv(path, comment='#')`. Runs and certifications are kept in
`--work` and reused: a killed run resumes where it stopped.
"""
import argparse, io, os, shlex, sys, time
import torch
from randsmooth.files import atomic_write
from randsmooth.experiments import DIGITS_COMPARISON, DIGITS_RECIPES, compare_methods
from bench_methods import cpu_name    # the script's folder is on sys.path

def machine()->str:
    return f"{cpu_name()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='nbs/data/methods_digits.csv', help='the CSV to write')
    p.add_argument('--work', default='runs/methods_digits', help='folder for runs and logs')
    p.add_argument('--sigmas', type=float, nargs='+', default=[0.25, 0.5])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--methods', nargs='+', default=list(DIGITS_COMPARISON),
                   choices=list(DIGITS_COMPARISON))
    p.add_argument('--epochs', type=int, default=15)
    p.add_argument('--N', type=int, default=1000, help="Certify's N (N0 = 100)")
    p.add_argument('--alpha', type=float, default=0.001)
    p.add_argument('--skip', type=int, default=5, help='certify every skip-th test digit')
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    methods = {m: DIGITS_COMPARISON[m] for m in a.methods}
    tic = time.perf_counter()
    df = compare_methods(a.work, methods, sigmas=tuple(a.sigmas), epochs=a.epochs, n=a.N,
                         alpha=a.alpha, skip=a.skip, seeds=tuple(a.seeds), recipes=DIGITS_RECIPES)
    wall = time.perf_counter() - tic
    command = ' '.join(shlex.quote(x) for x in ['python', 'tests/bench/compare_methods_digits.py',
                                                 *(sys.argv[1:] if argv is None else argv)])
    head = (f"# command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {command}\n"
            f"# machine: {machine()}\n"
            f"# wall seconds (training and certification, reused runs excluded): {wall:.0f}\n"
            f"# epochs {a.epochs}, Certify N0 100, N {a.N}, alpha {a.alpha}, every "
            f"{a.skip}th test digit\n")
    buf = io.StringIO(); df.to_csv(buf, index=False, float_format='%.6g')
    atomic_write(a.out, head + buf.getvalue())
    print(df.round(3).to_string()); print(f"wrote {a.out} in {wall:.0f} s")

if __name__ == '__main__': main()
