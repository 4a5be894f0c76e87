// CudaBackend: row gathers and scatters (cuda/indexing.h).
#include "cuda/indexing.h"
#include "cuda/runtime.h"
#include "tensor/cuda_glue/cuda_glue.h"

namespace mms {

using namespace cuda_glue;

namespace {

void check_index(const char* op, const Tensor& index) {
  check_cuda(op, "index", index);
  check_contiguous(op, "index", index);
  MMS_CHECK(index.dtype() == DType::Int64, op, ": index must be int64, got ", dtype_name(index.dtype()));
}

const int64_t* index_data(const Tensor& index) { return static_cast<const int64_t*>(index.raw_data()); }

}  // namespace

void CudaBackend::index_select_rows(const Tensor& table, const Tensor& index, Tensor& out) {
  const char* op = "index_select";
  check_cuda(op, "table", table);
  check_contiguous(op, "table", table);
  check_index(op, index);
  check_cuda(op, "output", out);
  MMS_CHECK(table.dim() == 2 && index.dim() == 1, op, ": expected table [N, D] and index [I], got ",
            shape_str(table.shape()), " and ", shape_str(index.shape()));
  check_shape(op, "output", out, {index.size(0), table.size(1)});
  MMS_CHECK(out.dtype() == table.dtype(), op, ": output dtype ", dtype_name(out.dtype()), " != table dtype ",
            dtype_name(table.dtype()));
  cuda::index_select_rows(table.raw_data(), table.element_size(), table.size(0), table.size(1), index_data(index),
                          index.size(0), out.raw_data(), cuda::stream());
  check_indices(op);
}

void CudaBackend::index_add_rows(const Tensor& grad, const Tensor& index, Tensor& table_grad) {
  const char* op = "index_add";
  check_f32(op, "grad", grad);
  check_contiguous(op, "grad", grad);
  check_index(op, index);
  check_f32(op, "table_grad", table_grad);
  check_contiguous(op, "table_grad", table_grad);
  MMS_CHECK(grad.dim() == 2 && index.dim() == 1 && table_grad.dim() == 2 && grad.size(0) == index.size(0) &&
                grad.size(1) == table_grad.size(1),
            op, ": expected grad [I, D], index [I], table_grad [N, D], got ", shape_str(grad.shape()), ", ",
            shape_str(index.shape()), ", ", shape_str(table_grad.shape()));
  cuda::index_add_rows_f32(static_cast<const float*>(grad.raw_data()), index_data(index), index.size(0),
                           grad.size(1), static_cast<float*>(table_grad.raw_data()), table_grad.size(0),
                           cuda::stream());
  check_indices(op);
}

void CudaBackend::gather_last(const Tensor& x, const Tensor& index, Tensor& out) {
  const char* op = "gather";
  check_cuda(op, "input", x);
  check_contiguous(op, "input", x);
  check_index(op, index);
  check_cuda(op, "output", out);
  MMS_CHECK(x.dim() == 2 && index.dim() == 2 && index.size(0) == x.size(0), op,
            ": expected x [M, N] and index [M, K], got ", shape_str(x.shape()), " and ", shape_str(index.shape()));
  check_shape(op, "output", out, index.shape());
  MMS_CHECK(out.dtype() == x.dtype(), op, ": output dtype ", dtype_name(out.dtype()), " != input dtype ",
            dtype_name(x.dtype()));
  cuda::gather_last(x.raw_data(), x.element_size(), x.size(0), x.size(1), index_data(index), index.size(1),
                    out.raw_data(), cuda::stream());
  check_indices(op);
}

void CudaBackend::scatter_add_last(const Tensor& grad, const Tensor& index, Tensor& out) {
  const char* op = "scatter_add";
  check_f32(op, "grad", grad);
  check_contiguous(op, "grad", grad);
  check_index(op, index);
  check_f32(op, "output", out);
  check_contiguous(op, "output", out);
  MMS_CHECK(grad.dim() == 2 && out.dim() == 2 && grad.shape() == index.shape() && out.size(0) == grad.size(0),
            op, ": expected grad and index [M, K] and out [M, N], got ", shape_str(grad.shape()), ", ",
            shape_str(index.shape()), ", ", shape_str(out.shape()));
  cuda::scatter_add_last_f32(static_cast<const float*>(grad.raw_data()), index_data(index), grad.size(0),
                             grad.size(1), static_cast<float*>(out.raw_data()), out.size(1), cuda::stream());
  check_indices(op);
}

}  // namespace mms
