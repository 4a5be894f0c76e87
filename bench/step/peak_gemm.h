// The card's bf16 tensor-core ceiling, measured in the same run: one cuBLAS
// 8192 x 8192 x 8192 bf16 GEMM with fp32 accumulation, timed after warm-up. MFU is
// quoted against this measured number, not a datasheet.
#pragma once

namespace mmsbench {
// TFLOP/s, or a negative number when the build has no CUDA or no GPU is present.
double measure_bf16_gemm_tflops();
}  // namespace mmsbench
