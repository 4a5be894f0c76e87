#!/usr/bin/env python3
"""Issue 8's table from one GPU run: reads the JSON lines bench/step (ours) and
../shared/bench/torch_step.py (the PyTorch peer) printed into perf.log, and prints one
markdown row per (mode, B, eager/graph) of ours with the matching peer figures and the
ratios (ours / peer: < 1 means we are faster).

  python3 tools/perf_table.py out/perf.log
"""
import json
import sys


def rows(path):
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                pass


def main():
    ours, peers = [], {}
    for r in rows(sys.argv[1] if len(sys.argv) > 1 else "out/perf.log"):
        if r.get("engine") == "mmscale":
            ours.append(r)
        elif r.get("peer") == "pytorch":
            peers[(r["mode"], r["batch_lists"], r.get("compile") or "eager")] = r
    card = (ours or list(peers.values()) or [{}])[0].get("device", "?")
    print(f"card: {card}\n")
    print("| mode | B | ours | ours ms | MFU | peak MiB | host waits/step | peer eager ms | ratio | "
          "peer compile ms | ratio | peer reduce-overhead ms | ratio | peer peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in ours:
        mode, b = r["mode"], r["batch_lists"]
        kind = "graph" if r.get("graph") and not r.get("graph_error") else "eager"
        if "cuDNN" in r.get("gemm_precision", ""):
            kind += ", cuDNN attention"  # MMS_ATTENTION=cudnn
        if "MMS_ATTENTION=tiles" in r.get("gemm_precision", ""):
            kind += ", tiles attention"  # chosen explicitly (the tiles are the default since 2026-11-27)
        if "GEMM path" in r.get("gemm_precision", ""):
            kind += ", GEMM-path attention"  # MMS_ATTENTION=gemm, or a run from before the tiles were the default
        if "MMS_BF16_ACTIVATIONS=0" in r.get("gemm_precision", ""):
            kind += ", fp32 activations"
        cells = [mode, str(b), kind, f'{r["median_ms"]:.1f}', f'{100 * r["mfu"]:.1f}%' if r.get("mfu", -1) > 0 else "-",
                 f'{r["peak_mem_mib"]:.0f}', f'{r.get("host_syncs_per_step", 0):.1f}']
        peer_mem = "-"
        for compile_mode in ("eager", "default", "reduce-overhead"):
            p = peers.get((mode, b, compile_mode))
            if p:
                cells += [f'{p["median_ms"]:.1f}', f'{r["median_ms"] / p["median_ms"]:.2f}x']
                if compile_mode == "eager":
                    peer_mem = f'{p["peak_mem_mib"]:.0f}'
            else:
                cells += ["-", "-"]
        cells.append(peer_mem)
        print("| " + " | ".join(cells) + " |")
    for r in ours:
        if r.get("graph_error"):
            print(f'\ngraph capture failed (mode {r["mode"]}, B={r["batch_lists"]}): {r["graph_error"]}')


if __name__ == "__main__":
    main()
