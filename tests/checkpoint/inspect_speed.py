#!/usr/bin/env python3
"""Times `sla-ckpt inspect` on a ~100 MB torch.save file against `cat file > /dev/null`.

Warm page cache, best of N runs each, interleaved so both see the same machine load. Prints the
ratio; exits 1 when it is not below --max-ratio (default 2.0).
usage: inspect_speed.py SLA_CKPT [--runs 5] [--max-ratio 2.0] [--file PATH]
The file (made with Python torch.save when --file is not given) is a valid SLA payload whose
5000:bf16 entry holds a 5000x5000 float32 weight, so inspect checks every CRC and computes the
statistics of all 25M values.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time


def make_file(path):
    import torch

    torch.manual_seed(0)
    d = 5000
    payload = {
        "settings": {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True},
        "state": {f"{d}:bf16": {"proj_l.weight": torch.randn(d, d), "proj_l.bias": torch.randn(d)}},
        "version": 1,
    }
    torch.save(payload, path)


def best_time(cmd, runs, stdout):
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=stdout, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sla_ckpt")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-ratio", type=float, default=2.0)
    ap.add_argument("--file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or os.path.join(tmp, "sla_attention.pt")
        if not args.file:
            make_file(path)
        size = os.path.getsize(path)
        with open(os.devnull, "wb") as null:
            subprocess.run(["cat", path], stdout=null, check=True)  # warm the page cache
            cat = inspect = float("inf")
            for _ in range(args.runs):  # interleaved: both see the same load
                cat = min(cat, best_time(["cat", path], 1, null))
                inspect = min(inspect, best_time([args.sla_ckpt, "inspect", path], 1, null))
    ratio = inspect / cat
    print(f"file {size / 1e6:.1f} MB: cat {cat * 1e3:.1f} ms, inspect {inspect * 1e3:.1f} ms, ratio {ratio:.2f} "
          f"(best of {args.runs}, limit {args.max_ratio})")
    return 0 if ratio < args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
