# benchmarks (bench/)
sd35_add_bench(bench_gemm bench/bench_gemm.cpp)
sd35_add_bench(bench_attention bench/bench_attention.cpp)
# Whole models on a full-size checkpoint (sd35 make-random-checkpoint): MMDiT forward, VAE
# decode, load time, peak RSS.
sd35_add_bench(bench_models bench/bench_models.cpp)
sd35_add_bench(bench_text bench/bench_text.cpp)  # CLIP-L + CLIP-G + T5-XXL encode, load, RSS
sd35_add_bench(bench_generate bench/bench_generate.cpp)  # end-to-end generate, s/step, VRAM (GPU)
# LayerNorm + adaLN modulate: the two-op path vs the fused op (CPU backend, MMDiT sizes).
sd35_add_bench(bench_norm_modulate bench/bench_norm_modulate.cpp)
