"""Runs the PyTorch peer (torch_step.py) for several (mode, batch) pairs in one process.

Each run is the peer's own main() with its own arguments, as if started alone: the model,
optimizer and inputs are built afresh and the peak-memory counter is reset by the peer;
between runs the previous run's tensors are collected and the cache emptied. One Python
start and one torch/transformers import instead of one per run (about 10 s each on the
GPU machine), so the whole B = 8, 32, 128 sweep fits the device call.

  python3 tools/peer_sweep.py PEER_SCRIPT bf16:8 bf16:32 fp32:128 ... [-- extra peer args]
Prints the peer's JSON line per run (and whatever else it prints).
"""
import gc
import runpy
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    peer, rest = sys.argv[1], sys.argv[2:]
    cut = rest.index("--") if "--" in rest else len(rest)
    runs, extra = rest[:cut], rest[cut + 1:]
    namespace = runpy.run_path(peer, run_name="peer")  # defines main() without running it
    torch = namespace.get("torch")  # the peer's own import
    for run in runs:
        mode, _, batch = run.partition(":")
        if not batch.isdigit() or mode not in ("fp32", "tf32", "bf16"):
            sys.exit(f"peer_sweep: '{run}' is not MODE:BATCH (MODE fp32, tf32 or bf16)")
        sys.argv = [peer, "--mode", mode, "--batch-lists", batch] + extra
        try:
            namespace["main"]()
        except Exception as error:  # one failed run (out of memory, say) must not lose the others
            print(f"peer_sweep: {run} failed: {error}", flush=True)
        gc.collect()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
