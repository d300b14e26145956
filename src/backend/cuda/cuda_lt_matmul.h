// A thin owner of one cuBLASLt handle and its workspace, with matmul plans (descriptors,
// layouts and the heuristic's algorithm) cached per shape/type/alignment so that repeated
// denoising steps do not query the heuristic again. Column-major, as cuBLASLt sees it:
// D[m, n] = act(alpha·op(A)[m, k] · op(B)[k, n] (+ D if accumulate) (+ bias[m])).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "backend/backend.h"
#include "core/dtype.h"
#include "sd35/status.h"

namespace sd35::cuda {

struct LtMatmul {
  bool transpose_a = false, transpose_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  DType a_type = DType::kF32;
  int64_t lda = 0;
  const void* b = nullptr;
  DType b_type = DType::kF32;
  int64_t ldb = 0;
  void* d = nullptr;
  DType d_type = DType::kF32;
  int64_t ldd = 0;
  float alpha = 1.0f;          // scales the product (not the accumulated D or the bias)
  bool accumulate = false;     // beta = 1 with C = D
  const void* bias = nullptr;  // [m] of bias_type, or null (CUBLASLT_EPILOGUE_BIAS)
  DType bias_type = DType::kF32;
  // kNone or kGeluTanh (CUBLASLT_EPILOGUE_GELU[_BIAS]: cuBLASLt's GELU is the tanh form).
  // Applied after the accumulation, so callers pair it with accumulate = false only.
  Activation activation = Activation::kNone;
};

// The last resort when cuBLASLt has no algorithm (odd alignments): one thread per output,
// f32 accumulation, any leading dimensions. Same semantics as LtGemm::run.
Status launch_matmul_fallback(const LtMatmul& mm, cudaStream_t stream);

class LtGemm {
 public:
  static Result<std::unique_ptr<LtGemm>> create(cudaStream_t stream);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Queues the matmul on the stream. *supported = false (and ok status) when cuBLASLt has no
  // algorithm for this configuration, so the caller can take another path — or, with
  // allow_fallback, runs our plain (slow, any layout) kernel instead.
  Status run(const LtMatmul& mm, bool* supported, bool allow_fallback = false);
  // Whether the last run() used our fallback kernel instead of cuBLASLt (for profile labels).
  bool last_was_fallback() const { return last_was_fallback_; }

 private:
  LtGemm() = default;
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool supported = false;
  };
  using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int, int, int, int64_t, int64_t,
                         int64_t, int, int, int, int, int, int, int, int>;
  Status make_plan(const LtMatmul& mm, Plan* plan);
  static void destroy(Plan& p);

  cublasLtHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, Plan> plans_;
  bool last_was_fallback_ = false;
};

}  // namespace sd35::cuda
