// The model components a set of weight files can hold, and how their keys are laid out.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sd35 {

enum class Component : uint8_t { kMMDiT, kVAE, kClipL, kClipG, kT5XXL };
inline constexpr int kNumComponents = 5;
inline constexpr Component kAllComponents[kNumComponents] = {
    Component::kMMDiT, Component::kVAE, Component::kClipL, Component::kClipG, Component::kT5XXL};

// "mmdit", "vae", "clip_l", "clip_g", "t5xxl".
std::string_view component_name(Component c);
// Accepts the names above and common spellings ("clip-l", "clipl", "t5", "model", ...).
std::optional<Component> component_from_name(std::string_view name);
bool is_clip(Component c);

// kSai: the original / ComfyUI names (LDM VAE, HF CLIPTextModel, HF T5EncoderModel), which
// are the canonical names. kDiffusers: transformer/ and vae/ of a diffusers folder; their
// keys are translated by the tables in key_maps.cpp.
enum class Layout : uint8_t { kSai, kDiffusers };
std::string_view layout_name(Layout l);

}  // namespace sd35
