// The tiny-a model set as Engine options, and the txt2img "euler" case of its pipeline goldens
// (prompt 'a photo of a cat' / '', seed 42, 4 steps, cfg 4.5, sgm_uniform, 128x128): shared by
// the engine tests that run the whole pipeline.
#pragma once

#include <filesystem>

#include "pipeline/engine.h"

namespace sd35::testing {

inline const std::filesystem::path kTinyA = std::filesystem::path(SD35_TEST_DATA_DIR) / "tiny-a";

inline EngineOptions tiny_options() {
  EngineOptions o;  // f32 compute (the goldens are f32), cpu backend
  for (const char* f :
       {"model.safetensors", "clip_l.safetensors", "clip_g.safetensors", "t5xxl.safetensors"})
    o.models.push_back({(kTinyA / f).string(), std::nullopt});
  return o;
}

inline GenerateParams euler_params() {
  GenerateParams p;
  p.prompt = "a photo of a cat";
  p.negative = "";
  p.width = p.height = 128;
  p.sample.sampler = Sampler::kEuler;
  p.sample.scheduler = Scheduler::kSgmUniform;
  p.sample.steps = 4;
  p.sample.cfg = 4.5;
  p.sample.seed = 42;
  return p;
}

}  // namespace sd35::testing
