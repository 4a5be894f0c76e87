// The CUDA backend: tensor/backend.h's kernel interface implemented by the raw-pointer
// kernels of cuda/. This layer turns Tensors into pointers, sizes and strided layouts,
// checks what the kernels assume (device, dtype, contiguity), and names the op in every
// error. Internal to tensor/cuda_glue/.
#pragma once

#include <initializer_list>
#include <vector>

#include "cuda/common.h"
#include "tensor/backend.h"

namespace mms {

class CudaBackend final : public Backend {
 public:
  CudaBackend();
  const char* name() const override { return "cuda"; }

  void copy(const Tensor& src, Tensor& dst) override;
  bool concat_contiguous(const std::vector<Tensor>& inputs, Tensor& out) override;
  void fill(Tensor& dst, double value) override;
  void arange(Tensor& dst, double start, double step) override;
  void random(RandomKind kind, uint64_t seed, uint64_t offset, double a, double b,
              Tensor& dst) override;
  void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& out) override;

  void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) override;
  void unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& x, Tensor& grad_in,
                      double alpha, double beta) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) override;

  void reduce_last(ReduceOp op, const Tensor& x, Tensor& out) override;
  void softmax_last(const Tensor& x, Tensor& out, bool log) override;
  void softmax_last_backward(const Tensor& grad_out, const Tensor& y, Tensor& grad_in,
                             bool log) override;
  void attention_softmax(const Tensor& scores, const Tensor& key_keep, bool causal, Tensor& probs,
                         Tensor& lse) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                  Tensor& mean, Tensor& rstd) override;
  void layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, const Tensor& grad_x_addend, Tensor& grad_x,
                           Tensor& grad_weight, Tensor& grad_bias) override;

  void bmm(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
           double beta) override;
  bool linear_epilogue(const Tensor& x, const Tensor& weight, const Tensor& bias, LinearEpilogue epilogue,
                       Tensor& out, Tensor& pre_activation) override;
  bool may_fuse_linear_weight_grad(DType operands) const override;
  bool linear_weight_grad(const Tensor& grad_out, const Tensor& x, Tensor& grad_weight, Tensor& grad_bias) override;

  void index_select_rows(const Tensor& table, const Tensor& index, Tensor& out) override;
  void index_add_rows(const Tensor& grad, const Tensor& index, Tensor& table_grad) override;
  void gather_last(const Tensor& x, const Tensor& index, Tensor& out) override;
  void scatter_add_last(const Tensor& grad, const Tensor& index, Tensor& out) override;

  void listmle(const Tensor& scores, const Tensor& order, const Tensor& lengths, Tensor& loss,
               Tensor& grad_scores) override;
  void adamw(const std::vector<AdamWTensor>& tensors, double lr, double beta1, double beta2,
             double eps, int64_t step) override;
  void adamw_device_scalars(const std::vector<AdamWTensor>& tensors, const Tensor& lr, double lr_scale,
                            double beta1, double beta2, double eps, const Tensor& step) override;
  void sum_of_squares_into(const std::vector<Tensor>& tensors, Tensor& out) override;

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
                 bool causal, double scale, Tensor& out, Tensor& lse) override;
  void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& key_keep, bool causal,
                          double scale, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) override;
  bool attention_tiles_supported(int64_t query_len, int64_t key_len, int64_t head_dim) override;
  void attention_tiles(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep, bool causal,
                       double scale, Tensor& out, Tensor& lse) override;
  void attention_tiles_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& out, const Tensor& lse, const Tensor& key_keep, bool causal,
                                double scale, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) override;
};

namespace cuda_glue {

cuda::ScalarType scalar_type(DType dtype);
// `name` of `op` is a defined tensor on a CUDA device.
void check_cuda(const char* op, const char* name, const Tensor& t);
// ... and float32 (the CUDA compute dtype), naming op, operand and the dtype it got.
void check_f32(const char* op, const char* name, const Tensor& t);
void check_contiguous(const char* op, const char* name, const Tensor& t);
void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected);
// Strided layouts of tensors that all have the first tensor's shape, coalesced jointly.
std::vector<cuda::StridedLayout> joint_layouts(const char* op, std::initializer_list<const Tensor*> tensors);
// In debug mode (cuda::debug_sync_enabled), throws when a kernel saw bad indices.
void check_indices(const char* op);
// A float32 pointer, or null for an undefined optional tensor.
float* f32_or_null(const Tensor& t);
// A key-padding mask ([batch, key_len]; bool, uint8, int32 or int64, nonzero = attend)
// as the contiguous bytes the attention kernels read: itself when it already is one,
// else a converted copy. Undefined stays undefined.
Tensor key_keep_bytes(const char* op, const Tensor& key_keep, int64_t batch, int64_t key_len);

}  // namespace cuda_glue

}  // namespace mms
