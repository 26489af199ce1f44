"""Under torchrun: sum a tensor over the process group with `randsmooth.runtime.all_reduce_sum`.

    python -m torch.distributed.run --nproc_per_node 1 tests/gpu/nccl_check.py --device cuda

`rs_train` joins a process group only when torchrun starts more than one process, and one GPU
takes one nccl process: so this check makes the group itself (nccl on a GPU, gloo on the CPU) and
runs the library's all-reduce through it. Exits 1 if the sum is wrong or the backend is not the
one asked for.
"""
import argparse, os, sys
import torch, torch.distributed as dist
from randsmooth.runtime import all_reduce_sum


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda', help='cuda (nccl) or cpu (gloo)')
    a = p.parse_args()
    local = int(os.environ.get('LOCAL_RANK', 0))
    device = torch.device('cuda', local) if a.device == 'cuda' else torch.device('cpu')
    want = 'nccl' if device.type == 'cuda' else 'gloo'
    if device.type == 'cuda': torch.cuda.set_device(device)
    dist.init_process_group(want)
    try:
        t = torch.arange(5.)
        got = all_reduce_sum(t, device)
        world = dist.get_world_size()
        ok = torch.equal(got, t * world) and got.device == t.device and dist.get_backend() == want
        print(f'{dist.get_backend()} process group of {world}: all_reduce_sum '
              f"{'correct' if ok else 'WRONG'} ({got.tolist()})")
    finally: dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == '__main__': sys.exit(main())
