// Argument checks of gemm, attention and conv2d, shared by the reference and CPU backends so
// both reject exactly the same inputs with the same messages (the CUDA backend will too).
#pragma once

#include "backend/backend.h"

namespace sd35::linear_checks {

Status gemm(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const GemmParams& params);
Status attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, int heads,
                 float scale);
// attention's checks, plus: bias f32 [H, Lq, Lk] or [1, H, Lq, Lk] with dense rows.
Status attention_masked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        int heads, float scale, bool causal, const Tensor* bias);
Status gather_rows(const Tensor& table, const Tensor& ids, const Tensor& out);
Status conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              const Conv2dParams& params);

}  // namespace sd35::linear_checks
