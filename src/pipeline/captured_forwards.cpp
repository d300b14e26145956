#include "pipeline/captured_forwards.h"

namespace sd35 {

Status CapturedForwards::run(const Key& key, const std::function<Status()>& forward) {
  if (!backend_.can_capture()) return forward();
  Entry& e = entries_[key];
  if (e.work) {
    ++replays_;
    return backend_.replay(*e.work);
  }
  if (e.failed || e.eager_runs == 0) {
    ++e.eager_runs;
    return forward();
  }
  Status failure = backend_.begin_capture();
  if (failure.ok()) {
    const Status fs = forward();
    // end_capture() follows every successful begin_capture(), also after a failed op.
    auto work = backend_.end_capture();
    if (fs.ok() && work.ok()) {
      e.work = std::move(work).value();
      ++captures_;
      ++replays_;
      return backend_.replay(*e.work);  // capturing ran nothing: this forward runs now
    }
    failure = fs.ok() ? work.status() : fs;
  }
  e.failed = true;
  if (!logged_failure_ && log_) {
    logged_failure_ = true;
    log_("graph capture failed, running the forward eagerly: " + failure.to_string());
  }
  ++e.eager_runs;
  return forward();
}

}  // namespace sd35
