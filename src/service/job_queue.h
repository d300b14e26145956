// JobQueue: a bounded FIFO of generation jobs with exactly one worker thread. One engine runs
// one job at a time (the GPU, or all CPU cores, is the bottleneck), so more workers would only
// make every job slower; requests wait here instead (SPEC-api.md §5).
//
// A job is an opaque function; the queue knows nothing of HTTP, JSON or the engine. It gives
// each job a JobControl through which a cancel request reaches the running job (the job hooks
// its Workspace::cancel flag), keeps the outcome of finished jobs for a while (history with a
// TTL, so a status can be looked up by id after the response went out), and supports a
// bounded drain for SIGTERM.
//
// Every accepted job's completion callback runs exactly once: on the worker thread after the
// job ran, or on the thread that removed it from the queue (cancel, shutdown). Callbacks run
// without the queue's lock held, so they may call back into the queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "sd35/status.h"

namespace sd35::service {

enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kInterrupted };
const char* job_state_name(JobState s);

using Clock = std::chrono::steady_clock;

// What a caller can see of a job (a snapshot).
struct JobInfo {
  std::string id;
  JobState state = JobState::kQueued;
  Status status;  // the job's error (kCancelled "interrupted" when interrupted)
  Clock::time_point submitted, started, finished;
  // The last progress the job reported (sampler step of total steps; 0/0 before any).
  int progress_step = 0, progress_total = 0;
  // Milliseconds spent waiting in the queue and running (0 while not known yet).
  double queue_ms() const;
  double run_ms() const;
};

// Handed to a running job. request_cancel() may come from any thread at any moment: the job
// registers a hook (usually `ws.cancel = true`) that is called at once when a cancel arrives,
// or immediately on registration if it already did.
class JobControl {
 public:
  bool cancelled() const { return cancelled_.load(); }
  void on_cancel(std::function<void()> hook);
  void request_cancel();

  // Progress events: the job reports (step, total) as it goes (usually from the engine's
  // per-step callback). Cheap and non-blocking for the job: two atomics and the queue's
  // on_progress listener, if any.
  void report_progress(int step, int total);
  int progress_step() const { return step_.load(); }
  int progress_total() const { return total_.load(); }

 private:
  friend class JobQueue;
  std::mutex mu_;
  std::atomic<bool> cancelled_{false};
  std::function<void()> hook_;
  std::atomic<int> step_{0}, total_{0};
  std::function<void(int, int)> progress_listener_;  // set by the queue before the job runs
};

using JobFunction = std::function<Status(JobControl&)>;
using JobDone = std::function<void(const JobInfo&)>;

enum class SubmitOutcome { kAccepted, kQueueFull, kDraining, kDuplicateId };

struct JobQueueOptions {
  size_t max_depth = 0;  // waiting + running jobs; 0: unlimited
  std::chrono::seconds history_ttl{600};
  size_t max_history = 10000;  // finished jobs kept at most (oldest dropped first)
  // Progress events of running jobs (id, step, total), called on the worker thread while the
  // job runs: must be quick and must not call back into the queue's blocking functions.
  std::function<void(const std::string& id, int step, int total)> on_progress = nullptr;
};

class JobQueue {
 public:
  explicit JobQueue(JobQueueOptions options = {});
  // Cancels what is left and joins the worker (callbacks of queued jobs run with
  // "interrupted").
  ~JobQueue();
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues `fn` under `id` (must be unique among queued/running jobs). `done` runs once when
  // the job finished, failed or was interrupted. Nothing is queued unless kAccepted.
  SubmitOutcome submit(const std::string& id, JobFunction fn, JobDone done);

  // Queued job: removed, completes as interrupted. Running job: its cancel hook fires; it
  // completes when the function returns (interrupted if it returns a cancelled status).
  // False when the id is not queued or running.
  bool cancel(const std::string& id);

  // Waiting + running jobs.
  size_t depth() const;
  bool full() const;  // max_depth > 0 && depth() >= max_depth
  bool draining() const { return draining_.load(); }
  size_t max_depth() const { return options_.max_depth; }

  // A queued, running or (within the TTL) finished job.
  std::optional<JobInfo> find(const std::string& id) const;

  // Stops accepting jobs (submit → kDraining) and waits up to `timeout` for the queue to
  // empty. Returns true when everything finished; otherwise the remaining jobs are cancelled
  // (queued ones complete as interrupted at once, the running one when it stops) and false is
  // returned after the worker is idle or a short grace period passed.
  bool drain(std::chrono::milliseconds timeout);

  // Average run time of recent jobs (for Retry-After); 0 before the first job.
  double average_run_ms() const;

 private:
  struct Job {
    JobInfo info;
    JobFunction fn;
    JobDone done;
    std::shared_ptr<JobControl> control;
  };
  void worker_loop();
  void record_finished(const JobInfo& info);  // needs mu_
  void prune_history(Clock::time_point now);  // needs mu_

  JobQueueOptions options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // worker: a job arrived or stop
  std::condition_variable idle_cv_;   // drain: queue emptied / job finished
  std::deque<std::shared_ptr<Job>> queue_;
  std::shared_ptr<Job> running_;
  std::map<std::string, JobInfo> history_;
  std::deque<std::pair<Clock::time_point, std::string>> history_order_;
  int completing_ = 0;  // finished jobs whose callback is still running
  double avg_run_ms_ = 0;
  std::atomic<bool> draining_{false};
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace sd35::service
