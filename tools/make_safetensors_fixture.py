#!/usr/bin/env python3
"""Writes tests/fixtures/safetensors/reference.safetensors with the official Python
`safetensors` writer (plus torch for bfloat16), so test_safetensors checks that we read
files made by the reference implementation, not just our own writer.

Values are simple closed forms that the C++ test recomputes:
  f64  [2,3]  i * 0.5 - 1             f32 [3]   [1.5, -2.25, 3e-3]
  f16  [2,2]  [0.5, -1, 65504, 2^-24]  bf16 [3] [1, -0.5, 3.140625]
  i64  [4]    [-3, 0, 2^40, 7]         i32 [2,1] [-7, 123456]
  u8   [3]    [0, 128, 255]            bool [4]  [T, F, F, T]
  logit_scale (f32, shape []) = 2.6592  empty (f32, shape [0, 5])
Metadata: {"format": "pt", "origin": "make_safetensors_fixture.py"}.

Run:  python3 tools/make_safetensors_fixture.py
"""
import os

import numpy as np
import torch
from safetensors.torch import save_file

out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "safetensors")
os.makedirs(out_dir, exist_ok=True)
tensors = {
    "f64": torch.tensor(np.arange(6, dtype=np.float64).reshape(2, 3) * 0.5 - 1),
    "f32": torch.tensor([1.5, -2.25, 3e-3], dtype=torch.float32),
    "f16": torch.tensor([[0.5, -1.0], [65504.0, 2.0 ** -24]], dtype=torch.float16),
    "bf16": torch.tensor([1.0, -0.5, 3.140625], dtype=torch.bfloat16),
    "i64": torch.tensor([-3, 0, 2 ** 40, 7], dtype=torch.int64),
    "i32": torch.tensor([[-7], [123456]], dtype=torch.int32),
    "u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False, False, True]),
    "logit_scale": torch.tensor(2.6592, dtype=torch.float32),
    "empty": torch.zeros(0, 5, dtype=torch.float32),
}
save_file(tensors, os.path.join(out_dir, "reference.safetensors"),
          metadata={"format": "pt", "origin": "make_safetensors_fixture.py"})
print("wrote", os.path.join(out_dir, "reference.safetensors"))
