"""PyTorch's own torch.distributed (gloo) all-reduce timing, the peer of `silt dist bench`.

Run under torchrun (or with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set):
    torchrun --standalone --nproc-per-node 2 benches/dist_allreduce.py --megabytes 100 --iterations 10
Rank 0 prints one JSON line with the same fields as `silt dist bench`.
"""
import argparse
import json
import time

import torch
import torch.distributed as dist

p = argparse.ArgumentParser()
p.add_argument("--megabytes", type=float, default=100.0)
p.add_argument("--iterations", type=int, default=10)
a = p.parse_args()
dist.init_process_group("gloo")
w = dist.get_world_size()
n = max(1, int(a.megabytes * 1e6 / 4))
t = torch.ones(n)
dist.all_reduce(t)
times = []
for _ in range(max(1, a.iterations)):
    dist.barrier()
    s = time.perf_counter()
    dist.all_reduce(t)
    times.append(time.perf_counter() - s)
if dist.get_rank() == 0:
    mean = sum(times) / len(times)
    b = n * 4.0
    print(json.dumps({"ranks": w, "megabytes": b / 1e6, "iterations": len(times), "mean_ms": mean * 1e3, "best_ms": min(times) * 1e3,
                      "gb_per_s": b / mean / 1e9, "bus_gb_per_s": b / mean / 1e9 * 2 * (w - 1) / w}))
dist.destroy_process_group()
