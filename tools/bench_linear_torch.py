#!/usr/bin/env python3
"""PyTorch CPU GFLOP/s of the ViT-B/32 image tower's linear layers at batch 8: the peer
of the "ViT b8" rows of bench/cpu_ops (same shapes, same 12 weights in turn, same
thread count, float32, best of repeats after a warm-up).

    pip install torch
    python3 tools/bench_linear_torch.py [--threads 2] [--budget 1.0]

Each row: x [400, in] through torch.nn.functional.linear with 12 different [out, in]
weights (and biases) in turn, as the tower's 12 layers are, so the weights come from
memory rather than cache.
"""
import argparse
import time

import torch


def best_seconds(run, budget, min_reps=3):
    run()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or spent < budget:
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        reps += 1
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of repeats per row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows, layers = 400, 12
    print(f"torch {torch.__version__} CPU float32, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    for name, fan_in, fan_out in (("ViT b8 qkv 400x768x768", 768, 768),
                                  ("ViT b8 fc1 400x768x3072", 768, 3072),
                                  ("ViT b8 fc2 400x3072x768", 3072, 768)):
        x = torch.rand(rows, fan_in) * 2 - 1
        weights = [torch.rand(fan_out, fan_in) * 2 - 1 for _ in range(layers)]
        biases = [torch.rand(fan_out) * 2 - 1 for _ in range(layers)]

        def run():
            with torch.no_grad():
                for w, b in zip(weights, biases):
                    torch.nn.functional.linear(x, w, b)

        seconds = best_seconds(run, args.budget)
        print(f"{name:<28} {2.0 * rows * fan_in * fan_out * layers / seconds * 1e-9:12.1f}")


if __name__ == "__main__":
    main()
