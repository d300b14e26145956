// Golden stage "tokenizer": tokenizer_goldens.json of the set (fixtures tokenizers/README.md).
//
// Every case's `comfyui` variant (ComfyUI SD3Tokenizer.tokenize_with_weights) must match
// exactly: clip_l, clip_g and t5xxl ids, and their weights (1.0 where the golden has none).
// Where the case has them, the raw whole-string encodings (raw.clip_slow_ids with start/end,
// raw.t5_ids with </s>) must match too. One line per case; the error is the largest absolute
// difference over ids and weights (0 = exact). The tokenizer data comes from the set's
// tokenizers/ folder (clip/vocab.json, clip/merges.txt, t5/tokenizer.json) when it has one,
// else from default_tokenizer_files().
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "cli/golden.h"
#include "text/tokenizers.h"

namespace sd35::cli::golden {
namespace {

constexpr std::string_view kFile = "tokenizer_goldens.json";

struct Diff {
  double max_abs = 0.0;
  std::string first;  // where the first mismatch is
  void add(double d, const std::string& where) {
    if (d > max_abs || std::isnan(d)) max_abs = std::isnan(d) ? INFINITY : d;
    if (d != 0.0 && first.empty()) first = where;
  }
};

void compare_ids(const nlohmann::ordered_json& golden, const std::vector<int32_t>& ours,
                 const std::string& what, Diff& diff) {
  if (!golden.is_array() || golden.size() != ours.size()) {
    diff.add(INFINITY, what + ": length " + std::to_string(ours.size()) + " vs golden " +
                           std::to_string(golden.is_array() ? golden.size() : 0));
    return;
  }
  for (size_t i = 0; i < ours.size(); ++i) {
    const double g = golden[i].is_number() ? golden[i].get<double>() : NAN;
    diff.add(std::fabs(g - ours[i]), what + "[" + std::to_string(i) + "]");
  }
}

void compare_encoder(const nlohmann::ordered_json& golden, const TokenChunks& ours,
                     const std::string& enc, Diff& diff) {
  const auto& ids = golden.value("ids", nlohmann::ordered_json::array());
  if (ids.size() != ours.ids.size()) {
    diff.add(INFINITY, enc + ": " + std::to_string(ours.ids.size()) + " chunks vs golden " +
                           std::to_string(ids.size()));
    return;
  }
  const bool has_w = golden.contains("weights");
  for (size_t c = 0; c < ids.size(); ++c) {
    const std::string where = enc + ".ids[" + std::to_string(c) + "]";
    compare_ids(ids[c], ours.ids[c], where, diff);
    // Weights are Python floats (e.g. 1.2100000000000002); ours are their float32 rounding.
    for (size_t i = 0; i < ours.weights[c].size(); ++i) {
      double g = 1.0;
      if (has_w) {
        const auto& gw = golden["weights"];
        g = c < gw.size() && i < gw[c].size() && gw[c][i].is_number() ? gw[c][i].get<double>()
                                                                      : NAN;
      }
      diff.add(std::fabs(static_cast<double>(static_cast<float>(g)) - ours.weights[c][i]),
               enc + ".weights[" + std::to_string(c) + "][" + std::to_string(i) + "]");
    }
  }
}

Result<TokenizerFiles> tokenizer_files_for(const std::string& set_dir) {
  const std::string d = set_dir + "/tokenizers";
  TokenizerFiles f{d + "/clip/vocab.json", d + "/clip/merges.txt", d + "/t5/tokenizer.json"};
  std::error_code ec;
  if (std::filesystem::is_regular_file(f.clip_vocab_json, ec) &&
      std::filesystem::is_regular_file(f.clip_merges_txt, ec) &&
      std::filesystem::is_regular_file(f.t5_tokenizer_json, ec))
    return f;
  return default_tokenizer_files();
}

Status run_tokenizer(StageContext& ctx) {
  const std::string path = ctx.set.dir() + "/" + std::string(kFile);
  if (!std::filesystem::exists(path)) {
    ctx.skipped = "no " + std::string(kFile) + " in the set";
    return ok_status();
  }
  std::ifstream in(path, std::ios::binary);
  const auto goldens = nlohmann::ordered_json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!goldens.is_object() || !goldens.contains("cases") || !goldens["cases"].is_array())
    return data_loss(path + ": not a tokenizer goldens file (no \"cases\" array)");

  SD35_ASSIGN_OR_RETURN(TokenizerFiles files, tokenizer_files_for(ctx.set.dir()));
  SD35_ASSIGN_OR_RETURN(auto tokenizer, SD3Tokenizer::load(files));
  ctx.info("tokenizer data: " + files.clip_vocab_json + ", " + files.t5_tokenizer_json);

  const Tolerance exact{0.0, 0.0};
  for (size_t k = 0; k < goldens["cases"].size(); ++k) {
    const auto& c = goldens["cases"][k];
    const std::string name = c.value("name", "case" + std::to_string(k));
    if (!c.contains("text") || !c["text"].is_string() || !c.contains("comfyui")) {
      ctx.report(failed_case(name, exact, "malformed case (no text or comfyui variant)"));
      continue;
    }
    const std::string text = c["text"].get<std::string>();
    const auto t0 = std::chrono::steady_clock::now();
    const SD3Tokens tokens = tokenizer->tokenize(text);
    const auto t1 = std::chrono::steady_clock::now();
    Diff diff;
    const auto& v = c["comfyui"];
    const std::pair<const char*, const TokenChunks*> encoders[] = {
        {"clip_l", &tokens.clip_l}, {"clip_g", &tokens.clip_g}, {"t5xxl", &tokens.t5xxl}};
    for (const auto& [enc, chunks] : encoders) {
      if (v.contains(enc)) {
        compare_encoder(v[enc], *chunks, enc, diff);
      } else {
        diff.add(INFINITY, std::string("golden has no comfyui.") + enc);
      }
    }
    const auto& raw = c.value("raw", nlohmann::ordered_json::object());
    if (raw.contains("clip_slow_ids")) {
      std::vector<int32_t> ids{ClipTokenizer::kStart};
      for (int32_t id : tokenizer->clip().encode(text)) ids.push_back(id);
      ids.push_back(ClipTokenizer::kEnd);
      compare_ids(raw["clip_slow_ids"], ids, "raw.clip_slow_ids", diff);
    }
    if (raw.contains("t5_ids")) {
      std::vector<int32_t> ids = tokenizer->t5().encode(text);
      ids.push_back(T5Tokenizer::kEnd);
      compare_ids(raw["t5_ids"], ids, "raw.t5_ids", diff);
    }
    CaseResult r;
    r.name = name;
    r.tol = exact;
    r.max_abs = diff.max_abs;
    r.max_rel = 0.0;
    r.pass = diff.first.empty();
    if (!r.pass) r.note = "first mismatch at " + diff.first;
    r.ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    ctx.report(std::move(r));
  }
  return ok_status();
}

}  // namespace

SD35_GOLDEN_STAGE("tokenizer", "CLIP-L/G and T5 token ids and prompt weights (comfyui variant)",
                  run_tokenizer);

}  // namespace sd35::cli::golden
