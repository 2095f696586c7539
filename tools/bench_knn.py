"""kNN neighbour search: faiss (exact IndexFlatIP) vs torch matmul + top-k, side by side.

The shape of a kNN evaluation on a full training split: 60,000 x 512 L2-normalised database
features (ResNet-18 size), 10,000 queries, k = 200. Both backends run in alternating rounds in
one process; the script prints their times, the ratio, and checks that they agree.

    python tools/bench_knn.py
    python tools/bench_knn.py --database 60000 --dim 512 --queries 10000 --k 200 --rounds 3
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ssl_emp.neighbours import faiss_available, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", type=int, default=60000)
    parser.add_argument("--queries", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not faiss_available():
        raise SystemExit("faiss is not installed: pip install faiss-cpu (or faiss-gpu)")
    generator = torch.Generator().manual_seed(0)
    database = F.normalize(torch.randn(args.database, args.dim, generator=generator), dim=1)
    queries = F.normalize(torch.randn(args.queries, args.dim, generator=generator), dim=1)
    database, queries = database.to(args.device), queries.to(args.device)
    times = {"faiss": 0.0, "torch": 0.0}
    results = {}
    for _ in range(args.rounds):
        for backend in ("faiss", "torch"):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            results[backend] = search(database, queries, args.k, use_faiss=backend == "faiss")
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[backend] += time.perf_counter() - started
    agree = (results["faiss"][1] == results["torch"][1]).float().mean().item()
    gap = (results["faiss"][0] - results["torch"][0]).abs().max().item()
    print(
        f"{args.database} x {args.dim} database, {args.queries} queries, k={args.k}, "
        f"device {args.device}, {torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    print(f"faiss IndexFlatIP : {times['faiss'] / args.rounds:7.3f} s per search")
    print(f"torch matmul+topk : {times['torch'] / args.rounds:7.3f} s per search")
    print(
        f"ratio torch/faiss : {times['torch'] / times['faiss']:7.2f}x (> 1 means faiss is faster)"
    )
    print(f"same neighbour ids: {100 * agree:.2f} %, largest similarity gap {gap:.2e}")


if __name__ == "__main__":
    main()
