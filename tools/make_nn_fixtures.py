#!/usr/bin/env python3
"""Writes tests/fixtures/nn/encoder_{quick_gelu,gelu}.safetensors: a small random
transformers CLIPEncoder (2 layers, hidden 8, 2 heads, MLP 16) with every parameter
moved away from its default (LayerNorm weights away from 1, biases away from 0), an
input [2, 5, 8], a padding + causal mask, an upstream gradient, the float64 output and
the gradients of sum(output * upstream) with respect to the input and every parameter.
test_nn.cpp loads the weights into nn::Encoder and checks it matches to 1e-12, so a
failure is pinned on nn/ before vlm/ parity is even looked at.

Tensors in each file: "param.<HF name>", "x", "key_keep" (i64 [2,5]), "upstream", "y",
"grad.x", "grad.<HF name>". Metadata: hidden_act, causal.
The reference uses attn_implementation="sdpa": HF's eager path runs its softmax in
float32 even for float64 models, which would cap agreement near 1e-7.

    pip install torch transformers safetensors
    python3 tools/make_nn_fixtures.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig
from transformers.models.clip.modeling_clip import CLIPEncoder

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "nn")
os.makedirs(OUT, exist_ok=True)

B, L, D = 2, 5, 8
for act in ("quick_gelu", "gelu"):
    torch.manual_seed(1234)
    cfg = CLIPTextConfig(hidden_size=D, num_attention_heads=2, intermediate_size=16,
                         num_hidden_layers=2, hidden_act=act)
    cfg._attn_implementation = "sdpa"
    enc = CLIPEncoder(cfg).double()
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(B, L, D, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    allowed = keep.bool()[:, None, None, :] & torch.ones(L, L).tril().bool()[None, None]
    upstream = torch.randn(B, L, D, dtype=torch.float64)
    y = enc(inputs_embeds=x, attention_mask=allowed).last_hidden_state
    (y * upstream).sum().backward()
    out = {"x": x.detach(), "key_keep": keep, "upstream": upstream, "y": y.detach(), "grad.x": x.grad}
    for name, p in enc.named_parameters():
        out["param." + name] = p.detach().clone()
        out["grad." + name] = p.grad
    path = os.path.join(OUT, f"encoder_{act}.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata={"hidden_act": act, "causal": "1"})
    print("wrote", path)
