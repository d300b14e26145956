# src/sampling: noise, model sampling and schedulers (and the samplers, appended by their owner).
list(APPEND SD35_ENGINE_SOURCES
  src/sampling/noise.cpp
  src/sampling/schedules.cpp
)
# Bit-exactness with torch: no compiler-made FMA contractions (the code writes its FMAs).
set_source_files_properties(src/sampling/noise.cpp src/sampling/schedules.cpp
                            PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
# Samplers and the guidance denoiser (CFG, timestep ranges, SLG): f32 op-by-op as torch.
list(APPEND SD35_ENGINE_SOURCES
  src/sampling/samplers.cpp
  src/sampling/guidance.cpp
)
set_source_files_properties(src/sampling/samplers.cpp src/sampling/guidance.cpp
                            PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
# UniPC (ComfyUI extra_samplers/uni_pc.py), same f32 op-by-op rule.
list(APPEND SD35_ENGINE_SOURCES src/sampling/samplers_unipc.cpp)
set_source_files_properties(src/sampling/samplers_unipc.cpp
                            PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
