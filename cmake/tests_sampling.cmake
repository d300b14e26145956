# Noise (bit-exact torch.randn) and schedules against common/ goldens (label unit).
sd35_add_test(test_sampling_noise_schedules LABEL unit SOURCES
  tests/unit/test_sampling_noise_schedules.cpp
)
# Samplers (replay of goldens_pipeline, analytic cases) and the guidance denoiser (label unit).
sd35_add_test(test_samplers LABEL unit SOURCES tests/unit/test_samplers.cpp)
