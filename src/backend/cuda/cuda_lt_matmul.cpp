#include "backend/cuda/cuda_lt_matmul.h"

#include "backend/cuda/cuda_common.h"

namespace sd35::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr int kMaxPlans = 512;  // shapes of a whole pipeline fit; beyond that start afresh

cudaDataType_t lt_type(DType t) {
  switch (t) {
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

Status lt_status(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return ok_status();
  std::string msg = std::string("gemm: cuBLASLt ") + what + " failed: " + cublasLtGetStatusName(s) +
                    " (" + cublasLtGetStatusString(s) + ")";
  if (s == CUBLAS_STATUS_ALLOC_FAILED) return resource_exhausted(std::move(msg));
  return internal_error(std::move(msg));
}

#define SD35_LT_RETURN_IF_ERROR(expr, what)            \
  do {                                                 \
    cublasStatus_t sd35_lt_s_ = (expr);                \
    if (sd35_lt_s_ != CUBLAS_STATUS_SUCCESS)           \
      return lt_status(sd35_lt_s_, what);              \
  } while (0)

}  // namespace

Result<std::unique_ptr<LtGemm>> LtGemm::create(cudaStream_t stream) {
  std::unique_ptr<LtGemm> g(new LtGemm());
  g->stream_ = stream;
  SD35_LT_RETURN_IF_ERROR(cublasLtCreate(&g->handle_), "handle creation");
  cudaError_t e = cudaMalloc(&g->workspace_, kWorkspaceBytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    g->workspace_ = nullptr;
    return cuda_status(e, "gemm", "allocating the cuBLASLt workspace (32 MiB)");
  }
  g->workspace_bytes_ = kWorkspaceBytes;
  return g;
}

LtGemm::~LtGemm() {
  for (auto& [key, plan] : plans_) destroy(plan);
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

void LtGemm::destroy(Plan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.d) cublasLtMatrixLayoutDestroy(p.d);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p = Plan{};
}

Status LtGemm::make_plan(const LtMatmul& mm, Plan* plan) {
  // f32 inputs use plain f32 FMA (CUBLAS_COMPUTE_32F, never TF32): the f32 mode is checked
  // against fp32 goldens at 1e-4. 16-bit inputs use tensor cores with f32 accumulation.
  SD35_LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                          "descriptor creation");
  cublasOperation_t ta = mm.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t tb = mm.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  SD35_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                         &ta, sizeof(ta)), "set TRANSA");
  SD35_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                         &tb, sizeof(tb)), "set TRANSB");
  if (mm.bias || mm.activation != Activation::kNone) {
    // The bias is read in its stored dtype (an f32 one is not rounded to D's type first, as
    // the reference adds it). A cuBLASLt that rejects the combination makes the plan
    // unsupported, not an error: the caller then takes its own epilogue path.
    const bool gelu = mm.activation == Activation::kGeluTanh;
    if (mm.activation != Activation::kNone && !gelu) {
      plan->supported = false;
      return ok_status();
    }
    cublasLtEpilogue_t epi = gelu ? (mm.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                                  : CUBLASLT_EPILOGUE_BIAS;
    int32_t bias_type = lt_type(mm.bias_type);
    if (cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                       sizeof(epi)) != CUBLAS_STATUS_SUCCESS ||
        (mm.bias && cublasLtMatmulDescSetAttribute(plan->desc,
                                                   CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                   sizeof(bias_type)) != CUBLAS_STATUS_SUCCESS)) {
      plan->supported = false;
      return ok_status();
    }
  }
  const uint64_t a_rows = uint64_t(mm.transpose_a ? mm.k : mm.m);
  const uint64_t a_cols = uint64_t(mm.transpose_a ? mm.m : mm.k);
  const uint64_t b_rows = uint64_t(mm.transpose_b ? mm.n : mm.k);
  const uint64_t b_cols = uint64_t(mm.transpose_b ? mm.k : mm.n);
  SD35_LT_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->a, lt_type(mm.a_type), a_rows, a_cols, mm.lda),
      "layout A");
  SD35_LT_RETURN_IF_ERROR(
      cublasLtMatrixLayoutCreate(&plan->b, lt_type(mm.b_type), b_rows, b_cols, mm.ldb),
      "layout B");
  SD35_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d, lt_type(mm.d_type), uint64_t(mm.m),
                                                     uint64_t(mm.n), mm.ldd), "layout D");

  cublasLtMatmulPreference_t pref = nullptr;
  SD35_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref), "preference creation");
  uint64_t ws = workspace_bytes_;
  uint32_t al_a = uint32_t(alignment_of(mm.a)), al_b = uint32_t(alignment_of(mm.b));
  uint32_t al_d = uint32_t(alignment_of(mm.d));
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  // The heuristic assumes 256-byte aligned pointers unless told otherwise; strided views
  // (a slice of a fused buffer, a weight panel) are often less aligned.
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                             &al_a, sizeof(al_a));
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                             &al_b, sizeof(al_b));
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                             &al_d, sizeof(al_d));
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                             &al_d, sizeof(al_d));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                       pref, 1, &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  // No algorithm, or a configuration the heuristic rejects (NOT_SUPPORTED, INVALID_VALUE for
  // unusual leading dimensions): the caller takes another path or our fallback kernel.
  if (s != CUBLAS_STATUS_SUCCESS || found == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
    plan->supported = false;
    return ok_status();
  }
  plan->algo = result.algo;
  plan->supported = true;
  return ok_status();
}

Status LtGemm::run(const LtMatmul& mm, bool* supported, bool allow_fallback) {
  *supported = false;
  last_was_fallback_ = false;
  if (mm.m == 0 || mm.n == 0) {
    *supported = true;
    return ok_status();
  }
  const Key key{int(mm.transpose_a), int(mm.transpose_b), mm.m, mm.n, mm.k, int(mm.a_type),
                int(mm.b_type), int(mm.d_type), mm.lda, mm.ldb, mm.ldd, int(mm.accumulate),
                int(mm.bias != nullptr), alignment_of(mm.a), alignment_of(mm.b),
                alignment_of(mm.d), alignment_of(mm.bias), int(mm.bias_type),
                int(mm.activation)};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    if (plans_.size() >= size_t(kMaxPlans)) {
      // Plans are host objects; the stream never references them after cublasLtMatmul returns.
      for (auto& [k, p] : plans_) destroy(p);
      plans_.clear();
    }
    Plan plan;
    Status st = make_plan(mm, &plan);
    if (!st.ok()) {
      destroy(plan);
      return st;
    }
    it = plans_.emplace(key, plan).first;
  }
  Plan& plan = it->second;
  if (!plan.supported) {
    if (!allow_fallback) return ok_status();
    *supported = true;
    last_was_fallback_ = true;
    return launch_matmul_fallback(mm, stream_);
  }
  if (mm.bias) {
    const void* bias = mm.bias;
    SD35_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)), "set BIAS_POINTER");
  }
  const float alpha = mm.alpha, beta = mm.accumulate ? 1.0f : 0.0f;
  cublasStatus_t s = cublasLtMatmul(handle_, plan.desc, &alpha, mm.a, plan.a, mm.b, plan.b, &beta,
                                    mm.d, plan.d, mm.d, plan.d, &plan.algo, workspace_,
                                    workspace_bytes_, stream_);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) {
    plan.supported = false;  // remembered: this configuration takes the caller's other path
    if (!allow_fallback) return ok_status();
    *supported = true;
    last_was_fallback_ = true;
    return launch_matmul_fallback(mm, stream_);
  }
  SD35_LT_RETURN_IF_ERROR(s, "matmul");
  *supported = true;
  return ok_status();
}

}  // namespace sd35::cuda
