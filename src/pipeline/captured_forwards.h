// Replays repeated model forwards as captured backend work (CUDA graphs). A denoising loop
// calls the MMDiT with the same shapes and the same device buffers at every step; only the
// buffers' contents (x, the timestep features) change. The first forward of a kind runs
// eagerly (it grows the arena and the backend's scratch, and plans its GEMMs), the second is
// captured and then replayed, later ones are replayed: one launch instead of ~800.
//
// The key must name everything the recording depends on: shapes, options and every device
// address the forward touches — the inputs, the output, and the arena mark it starts from
// (its intermediates are allocated above that mark, which stack discipline keeps free
// whenever the mark is the same again). A capture that fails (an op that cannot be captured)
// is reported once through `log` and that kind then always runs eagerly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "sd35/status.h"

namespace sd35 {

class CapturedForwards {
 public:
  using Key = std::vector<int64_t>;
  CapturedForwards(Backend& backend, std::function<void(const std::string&)> log)
      : backend_(backend), log_(std::move(log)) {}
  CapturedForwards(const CapturedForwards&) = delete;
  CapturedForwards& operator=(const CapturedForwards&) = delete;

  // Runs `forward` — which must only queue backend work on tensors that stay where they are
  // for this object's lifetime — eagerly, captured, or as a replay (see above).
  Status run(const Key& key, const std::function<Status()>& forward);

  int replays() const { return replays_; }  // forwards served by a replay (captures included)
  int captures() const { return captures_; }

 private:
  struct Entry {
    int eager_runs = 0;
    bool failed = false;
    std::unique_ptr<CapturedWork> work;
  };
  Backend& backend_;
  std::function<void(const std::string&)> log_;
  std::map<Key, Entry> entries_;
  int replays_ = 0, captures_ = 0;
  bool logged_failure_ = false;
};

}  // namespace sd35
