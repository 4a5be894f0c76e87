"""The PyTorch CPU peer of `bench/step --device cpu --config default`: one step of the
finetune program's built-in default run, in PyTorch + transformers, same thread count.

The sizes are not written here: they come from `step --config default --print-config`
(the finetune program's own defaults: small CLIP, head width and dropout, batch B x K,
text length, lr, weight decay, loss weights, gradient clipping). The head and the loss
are those of ../shared/bench/torch_step.py (concat[i, t, i*t] -> Linear -> GELU
[-> dropout] -> 1 + 4 sigmoid score and 3-way modality logits; ListMLE + w_mse MSE +
w_modality CE), with AdamW (decay on weights only, as nn::decay_param_groups) and
clip_grad_norm_ as the finetune trainer does.

  python3 tools/bench_step_torch_cpu.py --step build-perf/bin/step --threads 2 [--profile]
Prints one JSON line: median/min/max ms per step, pairs/s, peak RSS (MiB); with --profile,
first torch.profiler's table of one more step (self CPU time by op).
"""
import argparse, json, resource, subprocess, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class PairScorer(nn.Module):
    def __init__(self, clip, d, hidden, dropout):
        super().__init__()
        self.clip = clip
        self.fuse = nn.Linear(3 * d, hidden)
        self.drop = nn.Dropout(dropout)
        self.score = nn.Linear(hidden, 1)
        self.modality = nn.Linear(hidden, 3)

    def forward(self, pix, ids, mask, K):
        c = self.clip
        img = c.visual_projection(c.vision_model(pixel_values=pix).pooler_output)
        txt = c.text_projection(c.text_model(input_ids=ids, attention_mask=mask).pooler_output)
        img = F.normalize(img, dim=-1).repeat_interleave(K, 0)
        txt = F.normalize(txt, dim=-1)
        h = self.drop(F.gelu(self.fuse(torch.cat([img, txt, img * txt], -1))))
        return 1 + 4 * torch.sigmoid(self.score(h).squeeze(-1)), self.modality(h)


def listmle(scores, y):
    s = torch.gather(scores, 1, torch.argsort(y, dim=1, descending=True))
    return (torch.logcumsumexp(s.flip(1), 1).flip(1) - s).sum(1).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", default="build/bin/step", help="the bench/step binary (reads its --print-config)")
    ap.add_argument("--config", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="after the timings, print torch.profiler's table of one more step (self CPU time by op), "
                         "to set beside `step --device cpu --config default --profile`")
    a = ap.parse_args()
    cfg_json = json.loads(subprocess.check_output([a.step, "--device", "cpu", "--config", a.config, "--print-config"]))
    torch.set_num_threads(a.threads)
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    t, v = cfg_json["text"], cfg_json["vision"]
    cfg = CLIPConfig(text_config=dict(t), vision_config=dict(v), projection_dim=cfg_json["projection_dim"])
    B, K, L = cfg_json["batch_lists"], cfg_json["list_size"], cfg_json["text_len"]
    d = cfg_json["projection_dim"]
    model = PairScorer(CLIPModel(cfg), d, cfg_json["head_hidden"], cfg_json["head_dropout"]).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=cfg_json["weight_decay"]),
                             dict(params=no_decay, weight_decay=0.0)], lr=cfg_json["lr"])
    S = v["image_size"]
    pix = torch.randn(B, 3, S, S)
    ids = torch.randint(0, t["vocab_size"] - 2, (B * K, L))
    ids[:, -1] = t["eos_token_id"]
    mask = torch.ones_like(ids)
    y = torch.randint(1, 6, (B, K)).float() + torch.rand(B, K) * 0.01
    mod = torch.randint(0, 3, (B * K,))
    w_mse, w_mod, clip = cfg_json["w_mse"], cfg_json["w_modality"], cfg_json["grad_clip"]

    def step():
        s, logits = model(pix, ids, mask, K)
        s = s.view(B, K)
        loss = cfg_json["w_listmle"] * listmle(s, y) + w_mse * F.mse_loss(s, y) + w_mod * F.cross_entropy(logits, mod)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    print(json.dumps(dict(peer="pytorch", device="cpu", torch=torch.__version__, threads=torch.get_num_threads(),
                          config=a.config, batch_lists=B, list_size=K, text_len=L, median_ms=round(med, 3),
                          min_ms=round(times[0], 3), max_ms=round(times[-1], 3),
                          pairs_per_s=round(B * K / med * 1000, 1), peak_rss_mib=round(rss, 1))))


if __name__ == "__main__":
    main()
