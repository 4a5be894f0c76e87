#!/usr/bin/env python3
"""Writes tests/fixtures/clip/{A,B}/: small random CLIP checkpoints built with
transformers.CLIPModel, inputs, and float64 reference outputs and parameter gradients,
so tests/test_clip_parity.cpp checks vlm/ against the real implementation without
Python.

    pip install torch transformers safetensors
    python3 tools/make_clip_fixtures.py

Variants (both pooling rules, both activations):
    A: hidden_act quick_gelu, eos_token_id = 2 -> pooled token = argmax(input_ids)
    B: hidden_act gelu (erf), eos_token_id = 7 -> pooled token = first position == 7

Every parameter (LayerNorm weights and biases included) is randomised away from its
default, then rounded to float32, so model.safetensors is stored in float32 (as real
checkpoints are) and yet holds exactly the weights the float64 reference used.
The same goes for pixel_values. Files per variant:
    config.json          as CLIPModel.config.save_pretrained writes it
    model.safetensors    float32, HF names (written by save_pretrained)
    inputs.safetensors   pixel_values [N,3,H,W] f64, input_ids [M,L] i64, attention_mask [M,L] i64
    upstream.safetensors upstream_image_embeds [N,P], upstream_text_embeds [M,P] f64
    expected.safetensors the model outputs (f64) and grad.<name> for every parameter of
                         sum(image_embeds*U_i) + sum(text_embeds*U_t) (logit_scale: zeros)
HF masks causal + padding keys (additively with the dtype's min in eager mode, a boolean
mask under sdpa) and our kernel masks hard; they agree because no row is fully masked
(key 0 is always visible). The reference uses sdpa: eager runs its softmax in float32.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "clip")

VOCAB = 100
N_IMAGES, N_TEXTS, SEQ = 3, 4, 10  # SEQ < max_position_embeddings: positions are sliced


def make_config(hidden_act, eos_token_id):
    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16, hidden_act=hidden_act,
                layer_norm_eps=1e-5, eos_token_id=eos_token_id, bos_token_id=1, pad_token_id=0)
    # The vision tower gets a different width and eps so a mix-up of the two shows.
    vision = dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8, num_channels=3, hidden_act=hidden_act,
                  layer_norm_eps=1e-6)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=24,
                      logit_scale_init_value=1.7)


def randomise(model, gen):
    """Every parameter drawn away from its init, then rounded to float32 precision."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(torch.tensor(1.7).float().double())  # non-default, float32-exact
                continue
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                v = (1.0 + 0.3 * r) if name.endswith("weight") else 0.2 * r
            elif "embedding" in name:
                v = 0.5 * r
            elif name.endswith("bias"):
                v = 0.1 * r
            else:  # Linear weights [out, in]: keep activations O(1)
                v = r / (p.shape[-1] ** 0.5)
            p.copy_(v.float().double())


def make_inputs(gen, eos_token_id):
    pixel_values = torch.randn(N_IMAGES, 3, 32, 32, generator=gen, dtype=torch.float64).float().double()
    lengths = [SEQ, 7, 4, 6]  # padding in rows 1..3
    eos = VOCAB - 1 if eos_token_id == 2 else eos_token_id  # argmax rule: eos is the largest id
    ids = torch.randint(3, VOCAB - 1, (N_TEXTS, SEQ), generator=gen)
    ids[ids == eos] = eos + 1  # eos appears only where placed below
    mask = torch.zeros(N_TEXTS, SEQ, dtype=torch.int64)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, 0] = 1  # bos
        ids[row, n - 1] = eos
        # Row 1 pads with eos, as HF's CLIP tokenizer does: argmax ties and "first eos"
        # must both pick position n-1. The other rows pad with 0.
        ids[row, n:] = eos if row == 1 else 0
    if eos_token_id != 2:
        # Row 2 keeps ids larger than eos after its eos: argmax would pick a wrong token.
        assert int(ids[2].argmax()) != lengths[2] - 1
    return pixel_values, ids, mask


def build(variant, hidden_act, eos_token_id, seed):
    gen = torch.Generator().manual_seed(seed)
    config = make_config(hidden_act, eos_token_id)
    # "sdpa", not "eager": HF's eager attention runs its softmax in float32 even for a
    # float64 model, which would cap the reference at ~1e-7 relative accuracy.
    config._attn_implementation = "sdpa"
    model = CLIPModel(config).double().eval()
    randomise(model, gen)
    pixel_values, input_ids, attention_mask = make_inputs(gen, eos_token_id)
    proj = config.projection_dim
    up_img = torch.randn(N_IMAGES, proj, generator=gen, dtype=torch.float64)
    up_txt = torch.randn(N_TEXTS, proj, generator=gen, dtype=torch.float64)

    vis = model.vision_model(pixel_values=pixel_values)
    txt = model.text_model(input_ids=input_ids, attention_mask=attention_mask)
    image_features = model.visual_projection(vis.pooler_output)
    text_features = model.text_projection(txt.pooler_output)
    image_embeds = image_features / image_features.norm(p=2, dim=-1, keepdim=True)
    text_embeds = text_features / text_features.norm(p=2, dim=-1, keepdim=True)
    logits_per_image = model.logit_scale.exp() * image_embeds @ text_embeds.t()

    # The same numbers through the public forward, so the fixture is what users see.
    full = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
    assert torch.allclose(full.logits_per_image, logits_per_image, rtol=0, atol=1e-12)
    assert torch.allclose(full.image_embeds, image_embeds, rtol=0, atol=1e-14)

    loss = (image_embeds * up_img).sum() + (text_embeds * up_txt).sum()
    loss.backward()

    expected = {
        "vision_last_hidden_state": vis.last_hidden_state,
        "vision_pooled": vis.pooler_output,
        "image_features": image_features,
        "image_embeds": image_embeds,
        "text_last_hidden_state": txt.last_hidden_state,
        "text_pooled": txt.pooler_output,
        "text_features": text_features,
        "text_embeds": text_embeds,
        "logits_per_image": logits_per_image,
    }
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        expected["grad." + name] = g
    expected = {k: v.detach().double().contiguous() for k, v in expected.items()}

    folder = os.path.join(OUT, variant)
    os.makedirs(folder, exist_ok=True)
    model.float().save_pretrained(folder, safe_serialization=True)
    # save_pretrained writes transformers' own bookkeeping too; keep only the model files.
    for extra in os.listdir(folder):
        if extra not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(folder, extra))
    save_file({"pixel_values": pixel_values.contiguous(), "input_ids": input_ids.contiguous(),
               "attention_mask": attention_mask.contiguous()},
              os.path.join(folder, "inputs.safetensors"))
    save_file({"upstream_image_embeds": up_img, "upstream_text_embeds": up_txt},
              os.path.join(folder, "upstream.safetensors"))
    save_file(expected, os.path.join(folder, "expected.safetensors"),
              metadata={"generator": "tools/make_clip_fixtures.py",
                        "torch": torch.__version__,
                        "transformers": __import__("transformers").__version__})
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    print(f"{variant}: hidden_act={hidden_act} eos_token_id={cfg['text_config']['eos_token_id']} "
          f"pool rows={[int(i) for i in (input_ids.argmax(-1) if eos_token_id == 2 else (input_ids == eos_token_id).int().argmax(-1))]} "
          f"max|logits|={logits_per_image.abs().max().item():.3f}")


def main():
    torch.set_default_dtype(torch.float64)
    build("A", "quick_gelu", 2, seed=1234)
    build("B", "gelu", 7, seed=5678)
    return 0


if __name__ == "__main__":
    sys.exit(main())
