"""Execute notebooks in place at their full size and store their outputs (nbdev's convention: notebooks
are committed with the outputs of a real run; the docs render them, `nbdev_test` tests separately).

    .venv/bin/python .ci/execute_notebooks.py [NOTEBOOK ...] [--flags slow ...] [--jobs 1]
    bash .ci/execute_notebooks.sh [same arguments]     # the same, then README.md and the outputs check

Each notebook runs top to bottom in its own folder as `nbdev_test` runs it, except that `IN_TEST` is
UNSET (so every size switch `... if IN_TEST else ...` takes its full value); cells flagged with
settings.ini's `tst_flags` (notest, slow, cuda) are skipped unless named in `--flags`, and so are
`#| eval: false` cells. Old outputs are cleared first, so a skipped cell shows none. On success the
notebook is written with its outputs and `metadata.randsmooth_run` (in_test false, flags run, seconds,
versions, threads; kept by nbdev_clean through settings.ini's `allowed_metadata_keys`), then cleaned
with `nbdev_clean --fname`. A notebook whose cell raises is left untouched, and the command names
the notebook and the cell and exits 1.
"""
import argparse, os, platform, re, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run_one(path, flags):
    "Execute one notebook in place (IN_TEST unset); returns (path, seconds, error or None)."
    import multiprocessing  # noqa: F401  (spawned worker)
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdocs import directives
    os.environ.pop('IN_TEST', None)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    cfg, path, t0 = get_config(), Path(path).resolve(), time.time()
    skip = set(cfg.tst_flags.split()) - set(flags)
    nb = read_nb(path)
    for c in nb.cells:
        if c.cell_type == 'code': c['outputs'], c['execution_count'] = [], None
    def no_eval(cell):
        if cell.cell_type != 'code': return True
        d = directives(cell)
        return d.get('eval:', [''])[0].lower() == 'false' or bool(skip & d.keys())
    shell = CaptureShell(path)
    try:
        with working_directory(path.parent): shell.run_all(nb, exc_stop=True, preproc=no_eval)
    except Exception:
        failed = next((i for i, c in enumerate(nb.cells) if any(o.get('output_type') == 'error' for o in c.get('outputs', []))), None)
        src = (nb.cells[failed].source.strip().splitlines() or [''])[0][:80] if failed is not None else ''
        return str(path), time.time() - t0, f'cell {failed} ({src!r}) raised:\n{shell.prettytb(fname=str(path))}'
    import torch
    nb.metadata['randsmooth_run'] = dict(in_test=False, flags_run=sorted(flags), skipped_flags=sorted(skip),
                                         seconds=round(time.time() - t0), python=platform.python_version(),
                                         torch=torch.__version__, threads=torch.get_num_threads(),
                                         machine=platform.machine())
    write_nb(nb, path)
    nbdev_clean = Path(sys.executable).parent/'nbdev_clean'
    subprocess.run([str(nbdev_clean) if nbdev_clean.exists() else 'nbdev_clean', '--fname', str(path)], check=True)
    return str(path), time.time() - t0, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to run (default: every notebook under nbs/)')
    ap.add_argument('--flags', nargs='*', default=[], help='also run cells with these flags (e.g. slow)')
    ap.add_argument('--jobs', type=int, default=1, help='notebooks run in parallel (each gets OMP_NUM_THREADS threads)')
    args = ap.parse_args(argv)
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    cfg = get_config()
    nbs = [Path(p) for p in args.notebooks] or sorted(nbglob(cfg.nbs_path, func=Path))
    missing = [str(p) for p in nbs if not p.is_file()]
    if missing: print(f'no such notebook: {" ".join(missing)}'); return 2
    import multiprocessing
    t0, failed = time.time(), []
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=multiprocessing.get_context('spawn'), max_tasks_per_child=1) as ex:
        for path, secs, err in ex.map(run_one, nbs, [args.flags] * len(nbs)):
            print(f"  {'FAILED' if err else 'ok':6} {Path(path).relative_to(cfg.config_path)}  {secs:7.1f}s", flush=True)
            if err: failed.append((path, err))
    for path, err in failed: print(f'\n--- {path} (left unchanged): {err}')
    print(f'executed {len(nbs) - len(failed)} of {len(nbs)} notebooks in {time.time() - t0:.0f}s')
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
