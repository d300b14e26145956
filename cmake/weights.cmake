# src/io (safetensors), src/weights (index, key maps, configs, weight lists), src/cli.
list(APPEND SD35_ENGINE_SOURCES
  src/io/safetensors.cpp
  src/weights/key_maps.cpp
  src/weights/weight_index.cpp
  src/weights/model_configs.cpp
  src/weights/weight_specs.cpp
  src/weights/weight_binder.cpp
  src/weights/weight_placer.cpp
)
list(APPEND SD35_CLI_SOURCES
  src/cli/main.cpp
  src/cli/inspect.cpp
  src/cli/make_random_checkpoint.cpp
  # sd35 golden: the framework, then one file per stage (each registers itself).
  src/cli/golden.cpp
  src/cli/golden_mmdit.cpp
  src/cli/golden_vae.cpp
  src/cli/golden_tokenizer.cpp
  src/cli/golden_text.cpp
  src/cli/golden_cond.cpp
  src/cli/golden_noise.cpp
  src/cli/golden_schedule.cpp
)
# sd35 generate and the end-to-end golden stage (src/pipeline/engine.h).
list(APPEND SD35_CLI_SOURCES
  src/cli/generate.cpp
  src/cli/golden_pipeline.cpp
)
