# benchmarks (bench/)
sd35_add_bench(bench_gemm bench/bench_gemm.cpp)
sd35_add_bench(bench_attention bench/bench_attention.cpp)
