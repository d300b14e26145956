#include "service/job_queue.h"

#include <algorithm>
#include <vector>

namespace sd35::service {

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kSucceeded: return "succeeded";
    case JobState::kFailed: return "failed";
    case JobState::kInterrupted: return "interrupted";
  }
  return "?";
}

namespace {
double ms_between(Clock::time_point a, Clock::time_point b) {
  if (a == Clock::time_point{} || b == Clock::time_point{}) return 0;
  return std::chrono::duration<double, std::milli>(b - a).count();
}
Status interrupted() { return cancelled("interrupted"); }
}  // namespace

double JobInfo::queue_ms() const { return ms_between(submitted, started); }
double JobInfo::run_ms() const { return ms_between(started, finished); }

void JobControl::on_cancel(std::function<void()> hook) {
  std::unique_lock lock(mu_);
  hook_ = std::move(hook);
  // A cancel that arrived before the job got this far must still reach it.
  if (cancelled_.load() && hook_) hook_();
}

void JobControl::request_cancel() {
  std::unique_lock lock(mu_);
  cancelled_ = true;
  if (hook_) hook_();
}

void JobControl::report_progress(int step, int total) {
  step_ = step;
  total_ = total;
  if (progress_listener_) progress_listener_(step, total);
}

JobQueue::JobQueue(JobQueueOptions options) : options_(options) {
  worker_ = std::thread([this] { worker_loop(); });
}

JobQueue::~JobQueue() {
  std::deque<std::shared_ptr<Job>> left;
  {
    std::unique_lock lock(mu_);
    draining_ = true;
    stop_ = true;
    left.swap(queue_);
    if (running_) running_->control->request_cancel();
  }
  work_cv_.notify_all();
  for (auto& job : left) {
    job->info.state = JobState::kInterrupted;
    job->info.status = interrupted();
    job->info.finished = Clock::now();
    if (job->done) job->done(job->info);
  }
  if (worker_.joinable()) worker_.join();
}

SubmitOutcome JobQueue::submit(const std::string& id, JobFunction fn, JobDone done) {
  {
    std::unique_lock lock(mu_);
    if (draining_.load() || stop_) return SubmitOutcome::kDraining;
    if (options_.max_depth > 0 && queue_.size() + (running_ ? 1 : 0) >= options_.max_depth)
      return SubmitOutcome::kQueueFull;
    if ((running_ && running_->info.id == id) ||
        std::any_of(queue_.begin(), queue_.end(),
                    [&](const auto& j) { return j->info.id == id; }))
      return SubmitOutcome::kDuplicateId;
    const auto now = Clock::now();
    prune_history(now);
    history_.erase(id);  // a finished job's id may be reused; the new job replaces it
    auto job = std::make_shared<Job>();
    job->info.id = id;
    job->info.submitted = now;
    job->fn = std::move(fn);
    job->done = std::move(done);
    job->control = std::make_shared<JobControl>();
    queue_.push_back(std::move(job));
  }
  work_cv_.notify_one();
  return SubmitOutcome::kAccepted;
}

bool JobQueue::cancel(const std::string& id) {
  std::shared_ptr<Job> removed;
  {
    std::unique_lock lock(mu_);
    if (running_ && running_->info.id == id) {
      running_->control->request_cancel();
      return true;
    }
    auto it = std::find_if(queue_.begin(), queue_.end(),
                           [&](const auto& j) { return j->info.id == id; });
    if (it == queue_.end()) return false;
    removed = *it;
    queue_.erase(it);
    removed->info.state = JobState::kInterrupted;
    removed->info.status = interrupted();
    removed->info.finished = Clock::now();
    record_finished(removed->info);
  }
  if (removed->done) removed->done(removed->info);
  idle_cv_.notify_all();
  return true;
}

size_t JobQueue::depth() const {
  std::unique_lock lock(mu_);
  return queue_.size() + (running_ ? 1 : 0);
}

bool JobQueue::full() const {
  return options_.max_depth > 0 && depth() >= options_.max_depth;
}

std::optional<JobInfo> JobQueue::find(const std::string& id) const {
  std::unique_lock lock(mu_);
  if (running_ && running_->info.id == id) {
    JobInfo info = running_->info;
    info.progress_step = running_->control->progress_step();
    info.progress_total = running_->control->progress_total();
    return info;
  }
  for (const auto& j : queue_)
    if (j->info.id == id) return j->info;
  auto it = history_.find(id);
  if (it == history_.end()) return std::nullopt;
  if (Clock::now() - it->second.finished > options_.history_ttl) return std::nullopt;
  return it->second;
}

double JobQueue::average_run_ms() const {
  std::unique_lock lock(mu_);
  return avg_run_ms_;
}

bool JobQueue::drain(std::chrono::milliseconds timeout) {
  draining_ = true;
  std::unique_lock lock(mu_);
  const bool drained = idle_cv_.wait_for(
      lock, timeout, [&] { return queue_.empty() && !running_ && completing_ == 0; });
  if (drained) return true;
  // Out of time: nothing accepted is dropped silently; every job still completes (as
  // interrupted) so its client gets an answer.
  std::deque<std::shared_ptr<Job>> left;
  left.swap(queue_);
  if (running_) running_->control->request_cancel();
  for (auto& job : left) {
    job->info.state = JobState::kInterrupted;
    job->info.status = interrupted();
    job->info.finished = Clock::now();
    record_finished(job->info);
  }
  lock.unlock();
  for (auto& job : left)
    if (job->done) job->done(job->info);
  // The running job checks its cancel flag between sampler steps; give it a moment.
  lock.lock();
  idle_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return !running_ && completing_ == 0; });
  return false;
}

void JobQueue::worker_loop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and nothing left
      job = queue_.front();
      queue_.pop_front();
      job->info.state = JobState::kRunning;
      job->info.started = Clock::now();
      running_ = job;
    }
    if (options_.on_progress)
      job->control->progress_listener_ = [this, id = job->info.id](int step, int total) {
        options_.on_progress(id, step, total);
      };
    Status st;
    try {
      st = job->fn(*job->control);
    } catch (const std::exception& e) {
      // A job must never take the worker down with it.
      st = internal_error(std::string("job threw: ") + e.what());
    } catch (...) {
      st = internal_error("job threw an unknown exception");
    }
    if (st.code() == StatusCode::kCancelled) st = interrupted();
    {
      // Under the lock: find() reads running_->info concurrently.
      std::unique_lock lock(mu_);
      job->info.finished = Clock::now();
      job->info.progress_step = job->control->progress_step();
      job->info.progress_total = job->control->progress_total();
      job->info.state = st.ok()                               ? JobState::kSucceeded
                        : st.code() == StatusCode::kCancelled ? JobState::kInterrupted
                                                              : JobState::kFailed;
      job->info.status = st;
      running_.reset();
      ++completing_;
      record_finished(job->info);
      const double ms = job->info.run_ms();
      avg_run_ms_ = avg_run_ms_ == 0 ? ms : 0.8 * avg_run_ms_ + 0.2 * ms;
    }
    // completing_ keeps drain() waiting until the callback returned, so a drain that returns
    // true has seen every completion callback finish.
    if (job->done) job->done(job->info);
    job->fn = nullptr;  // release what the closure holds (images, workspaces) now
    {
      std::unique_lock lock(mu_);
      --completing_;
    }
    idle_cv_.notify_all();
  }
}

void JobQueue::record_finished(const JobInfo& info) {
  prune_history(info.finished);
  history_[info.id] = info;
  history_order_.emplace_back(info.finished, info.id);
}

void JobQueue::prune_history(Clock::time_point now) {
  while (!history_order_.empty() &&
         (now - history_order_.front().first > options_.history_ttl ||
          history_order_.size() > options_.max_history)) {
    auto it = history_.find(history_order_.front().second);
    // Only drop the entry this order record stands for (an id may have been reused).
    if (it != history_.end() && it->second.finished == history_order_.front().first)
      history_.erase(it);
    history_order_.pop_front();
  }
}

}  // namespace sd35::service
