#!/usr/bin/env python3
"""PyTorch CPU throughput of the ViT-B/32 CLIP towers: the baseline for
bench/clip_cpu (same shapes, same thread count, random weights, float32, inference).

    pip install torch transformers
    python3 tools/bench_clip_torch.py [--threads 2] [--iters 5]

Image tower: get_image_features(pixel_values [8, 3, 224, 224]); text tower:
get_text_features(input_ids [32, 77], attention_mask all ones). Median of --iters timed
runs after one warm-up. Attention: transformers' default (sdpa).
"""
import argparse
import statistics
import time

import torch
from transformers import CLIPConfig, CLIPModel


def median_seconds(iters, run):
    run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--image-batch", type=int, default=8)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--text-length", type=int, default=77)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = CLIPModel(CLIPConfig()).float().eval()  # class defaults = ViT-B/32
    pixels = torch.randn(args.image_batch, 3, 224, 224)
    ids = torch.randint(1, 49000, (args.text_batch, args.text_length))
    ids[:, -1] = model.config.text_config.eos_token_id
    mask = torch.ones_like(ids)

    with torch.inference_mode():
        image_s = median_seconds(args.iters, lambda: model.get_image_features(pixel_values=pixels))
        text_s = median_seconds(args.iters, lambda: model.get_text_features(input_ids=ids, attention_mask=mask))
    print(f"torch {torch.__version__} CPU float32, {torch.get_num_threads()} threads, "
          f"attn {model.config._attn_implementation}, median of {args.iters}")
    print(f"image tower: batch {args.image_batch}, {image_s:.3f} s/batch, {args.image_batch / image_s:.2f} images/s")
    print(f"text tower:  batch {args.text_batch} x {args.text_length} tokens, {text_s:.3f} s/batch, "
          f"{args.text_batch / text_s:.2f} texts/s")


if __name__ == "__main__":
    main()
