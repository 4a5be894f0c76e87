// CudaBackend: the fused training kernels: ListMLE, AdamW, the global gradient norm and
// attention (cuda/listmle.h, cuda/adamw.h, cuda/attention.h, cuda/attention_tiles.h).
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/adamw.h"
#include "cuda/attention.h"
#include "cuda/attention_tiles.h"
#include "cuda/cudnn_attention.h"
#include "cuda/listmle.h"
#include "cuda/runtime.h"
#include "tensor/cuda_glue/cuda_glue.h"

namespace mms {

using namespace cuda_glue;

namespace {

void check_dtype(const char* op, const char* name, const Tensor& t, DType dtype) {
  check_cuda(op, name, t);
  MMS_CHECK(t.dtype() == dtype, op, ": ", name, " ", shape_str(t.shape()), " is ", dtype_name(t.dtype()),
            ", expected ", dtype_name(dtype));
}

// q, k, v of one dtype (float32 for our kernels, bfloat16 for cuDNN's), contiguous.
cuda::AttentionShape attention_shape(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  const DType dtype = q.dtype() == DType::BFloat16 ? DType::BFloat16 : DType::Float32;
  check_dtype(op, "q", q, dtype);
  check_dtype(op, "k", k, dtype);
  check_dtype(op, "v", v, dtype);
  check_contiguous(op, "q", q);
  check_contiguous(op, "k", k);
  check_contiguous(op, "v", v);
  MMS_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": expected q, k, v as [B, H, L, D], got ",
            shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  MMS_CHECK(k.shape() == v.shape() && q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
            op, ": q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()),
            " do not agree");
  return {q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
}

// cuDNN's attention takes a key mask as per-list lengths (right padding), with the query
// lengths beside them: int32 [B] each, computed on the device (no host wait). In debug
// mode a mask that is not right-padding is an error; otherwise it would be read as its
// leading run of kept keys.
struct CudnnLengths {
  Tensor query, key;  // undefined without a key mask
  const int32_t* query_data() const { return query.defined() ? static_cast<const int32_t*>(query.raw_data()) : nullptr; }
  const int32_t* key_data() const { return key.defined() ? static_cast<const int32_t*>(key.raw_data()) : nullptr; }
};

CudnnLengths cudnn_lengths(const char* op, const Tensor& keep, const cuda::AttentionShape& shape) {
  CudnnLengths lengths;
  if (!keep.defined()) return lengths;
  lengths.query = empty({shape.batch}, DType::Int32, keep.device());
  lengths.key = empty({shape.batch}, DType::Int32, keep.device());
  cuda::key_prefix_lengths(static_cast<const uint8_t*>(keep.raw_data()), static_cast<int32_t*>(lengths.key.raw_data()),
                           static_cast<int32_t*>(lengths.query.raw_data()), shape.batch, shape.key_len,
                           shape.query_len, cuda::stream());
  if (cuda::debug_sync_enabled()) {
    const int64_t bad = cuda::take_non_prefix_mask_count();
    MMS_CHECK(bad == 0, op, ": cuDNN's attention reads key masks as lengths (right padding, at least one key "
              "kept), but ", bad, " of ", shape.batch, " key_keep rows hide a key before a kept one or keep none; "
              "use MMS_ATTENTION=gemm for such masks");
  }
  return lengths;
}

// cuDNN's frontend checks at execution that every bf16 operand is 16-byte aligned; a
// contiguous view starting mid-vector is copied to a fresh (aligned) buffer instead.
Tensor aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0 ? t : t.clone();
}

// Where the bf16 attention runs: cuDNN, or a clear error naming what it could not do.
void require_cudnn(const char* op, const std::string& why) {
  MMS_CHECK(why.empty(), op, ": ", why, " (bf16 attention on CUDA runs through cuDNN when MMS_ATTENTION=cudnn; "
                                        "unset it for our tensor-core tiles, the default)");
}

const float* cf(const Tensor& t) { return static_cast<const float*>(t.raw_data()); }
float* mf(const Tensor& t) { return static_cast<float*>(t.raw_data()); }

}  // namespace

void CudaBackend::listmle(const Tensor& scores, const Tensor& order, const Tensor& lengths, Tensor& loss,
                          Tensor& grad_scores) {
  const char* op = "listmle";
  check_f32(op, "scores", scores);
  check_contiguous(op, "scores", scores);
  MMS_CHECK(scores.dim() == 2, op, ": scores must be [B, K], got ", shape_str(scores.shape()));
  const int64_t lists = scores.size(0), width = scores.size(1);
  check_cuda(op, "order", order);
  check_cuda(op, "lengths", lengths);
  check_contiguous(op, "order", order);
  check_contiguous(op, "lengths", lengths);
  MMS_CHECK(order.dtype() == DType::Int64 && order.shape() == scores.shape(), op, ": order must be int64 ",
            shape_str(scores.shape()), ", got ", dtype_name(order.dtype()), " ", shape_str(order.shape()));
  MMS_CHECK(lengths.dtype() == DType::Int64 && lengths.numel() == lists, op, ": lengths must be int64 [",
            lists, "], got ", dtype_name(lengths.dtype()), " ", shape_str(lengths.shape()));
  check_f32(op, "loss", loss);
  MMS_CHECK(loss.numel() == lists, op, ": loss must have ", lists, " elements");
  check_f32(op, "grad_scores", grad_scores);
  check_shape(op, "grad_scores", grad_scores, scores.shape());
  // The kernel never reads out of bounds (it clamps lengths and skips out-of-range
  // items), but a repeated item would give a wrong loss. The order normally comes from
  // losses::listmle_order, which builds a permutation; checking it here needs a host
  // copy, i.e. a wait for the device in the middle of the step, so it runs only with
  // MMS_CUDA_DEBUG_SYNC=1 or in debug builds (like the index checks).
  if (cuda::debug_sync_enabled()) {
    const std::vector<int64_t> host_lengths = lengths.to_vector<int64_t>();
    const std::vector<int64_t> host_order = order.to_vector<int64_t>();
    std::vector<int64_t> seen(size_t(width), -1);
    for (int64_t b = 0; b < lists; ++b) {
      const int64_t n = host_lengths[size_t(b)];
      MMS_CHECK(n >= 0 && n <= width, op, ": list ", b, " has length ", n, " outside 0..", width);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t item = host_order[size_t(b * width + k)];
        MMS_CHECK(item >= 0 && item < width, op, ": list ", b, " order[", k, "] = ", item,
                  " is out of range 0..", width - 1);
        MMS_CHECK(seen[size_t(item)] != b, op, ": list ", b, " names item ", item, " twice in its order");
        seen[size_t(item)] = b;
      }
    }
  }
  cuda::listmle_f32(cf(scores), static_cast<const int64_t*>(order.raw_data()),
                    static_cast<const int64_t*>(lengths.raw_data()), lists, width, mf(loss), mf(grad_scores),
                    cuda::stream());
}

namespace {
// The kernel's view of the tensors (float32, contiguous, shapes matching the param).
std::vector<cuda::AdamWPointers> adamw_pointers(const std::vector<Backend::AdamWTensor>& tensors) {
  const char* op = "adamw";
  std::vector<cuda::AdamWPointers> pointers;
  pointers.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Backend::AdamWTensor& t = tensors[i];
    const Tensor* parts[] = {&t.param, &t.grad, &t.exp_avg, &t.exp_avg_sq};
    const char* names[] = {"param", "grad", "exp_avg", "exp_avg_sq"};
    for (int j = 0; j < 4; ++j) {
      check_f32(op, names[j], *parts[j]);
      check_contiguous(op, names[j], *parts[j]);
      MMS_CHECK(parts[j]->shape() == t.param.shape(), op, ": tensor ", i, " ", names[j], " ",
                shape_str(parts[j]->shape()), " does not match param ", shape_str(t.param.shape()));
    }
    pointers.push_back({mf(t.param), cf(t.grad), mf(t.exp_avg), mf(t.exp_avg_sq), t.param.numel(),
                        float(t.weight_decay)});
  }
  return pointers;
}
}  // namespace

void CudaBackend::adamw(const std::vector<AdamWTensor>& tensors, double lr, double beta1, double beta2,
                        double eps, int64_t step) {
  MMS_CHECK(step >= 1, "adamw: step must be >= 1 (bias correction), got ", step);
  const std::vector<cuda::AdamWPointers> pointers = adamw_pointers(tensors);
  cuda::adamw_f32(pointers.data(), int64_t(pointers.size()), lr, beta1, beta2, eps, step, cuda::stream());
}

void CudaBackend::adamw_device_scalars(const std::vector<AdamWTensor>& tensors, const Tensor& lr, double lr_scale,
                                       double beta1, double beta2, double eps, const Tensor& step) {
  check_cuda("adamw", "lr", lr);
  check_cuda("adamw", "step", step);
  MMS_CHECK(lr.dtype() == DType::Float64 && lr.numel() == 1 && step.dtype() == DType::Int64 && step.numel() == 1,
            "adamw: lr must be a float64 scalar and step an int64 scalar, got ", dtype_name(lr.dtype()), " ",
            shape_str(lr.shape()), " and ", dtype_name(step.dtype()), " ", shape_str(step.shape()));
  const std::vector<cuda::AdamWPointers> pointers = adamw_pointers(tensors);
  cuda::adamw_f32_device_scalars(pointers.data(), int64_t(pointers.size()), static_cast<const double*>(lr.raw_data()),
                                 lr_scale, beta1, beta2, eps, static_cast<const int64_t*>(step.raw_data()),
                                 cuda::stream());
}

void CudaBackend::sum_of_squares_into(const std::vector<Tensor>& tensors, Tensor& out) {
  check_cuda("sum_of_squares", "out", out);
  MMS_CHECK(out.dtype() == DType::Float64 && out.numel() == 1, "sum_of_squares: out must be a float64 scalar, got ",
            dtype_name(out.dtype()), " ", shape_str(out.shape()));
  std::vector<const float*> pointers;
  std::vector<int64_t> numels;
  for (const Tensor& t : tensors) {
    check_f32("sum_of_squares", "tensor", t);
    check_contiguous("sum_of_squares", "tensor", t);
    pointers.push_back(cf(t));
    numels.push_back(t.numel());
  }
  cuda::sum_of_squares_f32(pointers.data(), numels.data(), int64_t(pointers.size()),
                           static_cast<double*>(out.raw_data()), cuda::stream());
}

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep, bool causal,
                            double scale, Tensor& out, Tensor& lse) {
  const char* op = "attention";
  const cuda::AttentionShape shape = attention_shape(op, q, k, v);
  check_dtype(op, "out", out, q.dtype());
  check_contiguous(op, "out", out);
  check_shape(op, "out", out, q.shape());
  check_f32(op, "lse", lse);
  check_contiguous(op, "lse", lse);
  check_shape(op, "lse", lse, {shape.batch, shape.heads, shape.query_len});
  const Tensor keep = key_keep_bytes(op, key_keep, shape.batch, shape.key_len);
  if (q.dtype() == DType::BFloat16) {
    const CudnnLengths lengths = cudnn_lengths(op, keep, shape);
    MMS_CHECK(reinterpret_cast<uintptr_t>(out.raw_data()) % 16 == 0, op, ": out must be 16-byte aligned for cuDNN");
    require_cudnn(op, cuda::cudnn_attention_forward(aligned16(q).raw_data(), aligned16(k).raw_data(),
                                                    aligned16(v).raw_data(), lengths.query_data(), lengths.key_data(),
                                                    causal, float(scale), out.raw_data(), mf(lse), shape,
                                                    cuda::stream()));
    return;
  }
  cuda::attention_forward_f32(cf(q), cf(k), cf(v), keep.defined() ? static_cast<const uint8_t*>(keep.raw_data()) : nullptr,
                              causal, float(scale), mf(out), mf(lse), shape, cuda::stream());
}

void CudaBackend::attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& out, const Tensor& lse, const Tensor& key_keep, bool causal,
                                     double scale, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  const char* op = "attention_backward";
  const cuda::AttentionShape shape = attention_shape(op, q, k, v);
  for (const Tensor* t : {&grad_out, &out}) {
    check_dtype(op, t == &out ? "out" : "grad_out", *t, q.dtype());
    check_contiguous(op, t == &out ? "out" : "grad_out", *t);
    check_shape(op, t == &out ? "out" : "grad_out", *t, q.shape());
  }
  check_f32(op, "lse", lse);
  check_contiguous(op, "lse", lse);
  check_shape(op, "lse", lse, {shape.batch, shape.heads, shape.query_len});
  const Tensor* grads[] = {&grad_q, &grad_k, &grad_v};
  const char* names[] = {"grad_q", "grad_k", "grad_v"};
  for (int i = 0; i < 3; ++i) {
    check_dtype(op, names[i], *grads[i], q.dtype());
    check_contiguous(op, names[i], *grads[i]);
  }
  check_shape(op, "grad_q", grad_q, q.shape());
  check_shape(op, "grad_k", grad_k, k.shape());
  check_shape(op, "grad_v", grad_v, v.shape());
  const Tensor keep = key_keep_bytes(op, key_keep, shape.batch, shape.key_len);
  if (q.dtype() == DType::BFloat16) {
    const CudnnLengths lengths = cudnn_lengths(op, keep, shape);
    for (int i = 0; i < 3; ++i)
      MMS_CHECK(reinterpret_cast<uintptr_t>(grads[i]->raw_data()) % 16 == 0, op, ": ", names[i],
                " must be 16-byte aligned for cuDNN");
    // cuDNN writes no gradient at padded keys (j >= the list's length): they are 0; nor,
    // for a list that keeps no key at all, to its queries (whose gradient is 0 too).
    if (lengths.key.defined()) {
      fill(grad_q, 0.0);
      fill(grad_k, 0.0);
      fill(grad_v, 0.0);
    }
    require_cudnn(op, cuda::cudnn_attention_backward(aligned16(q).raw_data(), aligned16(k).raw_data(),
                                                     aligned16(v).raw_data(), aligned16(out).raw_data(),
                                                     aligned16(grad_out).raw_data(), cf(lse), lengths.query_data(),
                                                     lengths.key_data(), causal, float(scale), grad_q.raw_data(),
                                                     grad_k.raw_data(), grad_v.raw_data(), shape, cuda::stream()));
    return;
  }
  cuda::attention_backward_f32(cf(grad_out), cf(q), cf(k), cf(v), cf(out), cf(lse),
                               keep.defined() ? static_cast<const uint8_t*>(keep.raw_data()) : nullptr, causal,
                               float(scale), mf(grad_q), mf(grad_k), mf(grad_v), shape, cuda::stream());
}

namespace {
// The tile kernels read and write [B, H, L, D] views through strides: any view whose last
// dim is contiguous (or has one element), of the expected shape and dtype.
cuda::HeadStrides head_strides(const char* op, const char* name, const Tensor& t, const Shape& shape, DType dtype) {
  check_dtype(op, name, t, dtype);
  check_shape(op, name, t, shape);
  MMS_CHECK(t.stride(3) == 1 || t.size(3) == 1, op, ": ", name, " ", shape_str(t.shape()),
            " must have a contiguous last dim (stride 1), got stride ", t.stride(3));
  return {t.stride(0), t.stride(1), t.stride(2)};
}

const uint16_t* bf16_bits(const Tensor& t) { return static_cast<const uint16_t*>(t.raw_data()); }

// What both directions of the tiles check and pass: q, k, v as bf16 [B, H, L, D] views
// with agreeing sizes the device takes, out (whose dtype, float32 or bf16, the output
// gradient and the gradients share), lse [B, H, Lq] float32 and the key mask as bytes.
struct TilesOperands {
  cuda::AttentionShape shape;
  cuda::HeadStrides q, k, v, out;
  bool out_bf16 = false;
  Tensor keep;
  const uint8_t* keep_data() const { return keep.defined() ? static_cast<const uint8_t*>(keep.raw_data()) : nullptr; }
};

TilesOperands tiles_operands(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse, const Tensor& key_keep) {
  MMS_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": expected q, k, v as [B, H, L, D], got ",
            shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  TilesOperands t;
  t.shape = {q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  MMS_CHECK(cuda::attention_tiles_supported(t.shape.query_len, t.shape.key_len, t.shape.head_dim), op,
            ": the tensor-core tiles take lengths 1..128 and head_dim a multiple of 16 up to 128 on sm_80+ "
            "cards; got q ", shape_str(q.shape()), ", k ", shape_str(k.shape()));
  t.q = head_strides(op, "q", q, q.shape(), DType::BFloat16);
  t.k = head_strides(op, "k", k, k.shape(), DType::BFloat16);
  t.v = head_strides(op, "v", v, k.shape(), DType::BFloat16);
  MMS_CHECK(out.dtype() == DType::Float32 || out.dtype() == DType::BFloat16, op,
            ": out and the gradients must be float32 or bfloat16, got ", dtype_name(out.dtype()));
  t.out_bf16 = out.dtype() == DType::BFloat16;
  t.out = head_strides(op, "out", out, q.shape(), out.dtype());
  check_f32(op, "lse", lse);
  check_contiguous(op, "lse", lse);
  check_shape(op, "lse", lse, {t.shape.batch, t.shape.heads, t.shape.query_len});
  t.keep = key_keep_bytes(op, key_keep, t.shape.batch, t.shape.key_len);
  return t;
}
}  // namespace

bool CudaBackend::attention_tiles_supported(int64_t query_len, int64_t key_len, int64_t head_dim) {
  return cuda::attention_tiles_supported(query_len, key_len, head_dim);
}

void CudaBackend::attention_tiles(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
                                  bool causal, double scale, Tensor& out, Tensor& lse) {
  const TilesOperands t = tiles_operands("attention_tiles", q, k, v, out, lse, key_keep);
  cuda::attention_tiles_forward(bf16_bits(q), t.q, bf16_bits(k), t.k, bf16_bits(v), t.v, t.keep_data(), causal,
                                float(scale), out.raw_data(), t.out, t.out_bf16, mf(lse), t.shape, cuda::stream());
}

void CudaBackend::attention_tiles_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const Tensor& out, const Tensor& lse,
                                           const Tensor& key_keep, bool causal, double scale, Tensor& grad_q,
                                           Tensor& grad_k, Tensor& grad_v) {
  const char* op = "attention_tiles_backward";
  const TilesOperands t = tiles_operands(op, q, k, v, out, lse, key_keep);
  const DType dtype = out.dtype();
  const cuda::HeadStrides gos = head_strides(op, "grad_out", grad_out, q.shape(), dtype);
  const cuda::HeadStrides gqs = head_strides(op, "grad_q", grad_q, q.shape(), dtype);
  const cuda::HeadStrides gks = head_strides(op, "grad_k", grad_k, k.shape(), dtype);
  const cuda::HeadStrides gvs = head_strides(op, "grad_v", grad_v, k.shape(), dtype);
  cuda::attention_tiles_backward(grad_out.raw_data(), gos, out.raw_data(), t.out, bf16_bits(q), t.q, bf16_bits(k),
                                 t.k, bf16_bits(v), t.v, cf(lse), t.keep_data(), causal, float(scale),
                                 grad_q.raw_data(), gqs, grad_k.raw_data(), gks, grad_v.raw_data(), gvs, t.out_bf16,
                                 t.shape, cuda::stream());
}

}  // namespace mms
