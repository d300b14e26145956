// JobQueue with fake job functions (no engine, no HTTP): FIFO order on one worker, the depth
// limit, cancelling queued and running jobs, history with a TTL, drain.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "service/job_queue.h"

namespace sd35::service {
namespace {

using namespace std::chrono_literals;

// A latch the test opens to let a blocked job finish.
class Gate {
 public:
  void open() {
    std::unique_lock l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Collects completion callbacks and lets the test wait for them (bounded).
class Completions {
 public:
  JobDone callback() {
    return [this](const JobInfo& info) {
      std::unique_lock l(mu_);
      done_.push_back(info);
      cv_.notify_all();
    };
  }
  bool wait_for_count(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return done_.size() >= n; });
  }
  std::vector<JobInfo> get() {
    std::unique_lock l(mu_);
    return done_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<JobInfo> done_;
};

// Waits (bounded) until the job is running.
bool wait_running(const JobQueue& q, const std::string& id) {
  for (int i = 0; i < 500; ++i) {
    auto info = q.find(id);
    if (info && info->state == JobState::kRunning) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(JobQueue, RunsJobsInFifoOrderOneAtATime) {
  JobQueue q;
  Completions c;
  std::mutex mu;
  std::vector<int> order;
  std::atomic<int> concurrent{0}, max_concurrent{0};
  for (int i = 0; i < 5; ++i) {
    auto fn = [&, i](JobControl&) {
      const int now = ++concurrent;
      max_concurrent = std::max(max_concurrent.load(), now);
      std::this_thread::sleep_for(5ms);
      {
        std::unique_lock l(mu);
        order.push_back(i);
      }
      --concurrent;
      return ok_status();
    };
    ASSERT_EQ(q.submit("job" + std::to_string(i), fn, c.callback()), SubmitOutcome::kAccepted);
  }
  ASSERT_TRUE(c.wait_for_count(5));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(max_concurrent.load(), 1);
  for (const auto& info : c.get()) EXPECT_EQ(info.state, JobState::kSucceeded);
  EXPECT_EQ(q.depth(), 0u);
  EXPECT_GT(q.average_run_ms(), 0.0);
}

TEST(JobQueue, FailedJobKeepsItsStatus) {
  JobQueue q;
  Completions c;
  ASSERT_EQ(q.submit("bad", [](JobControl&) { return invalid_argument("boom"); }, c.callback()),
            SubmitOutcome::kAccepted);
  ASSERT_EQ(q.submit("throws", [](JobControl&) -> Status { throw std::runtime_error("x"); },
                     c.callback()),
            SubmitOutcome::kAccepted);
  ASSERT_TRUE(c.wait_for_count(2));
  auto done = c.get();
  EXPECT_EQ(done[0].state, JobState::kFailed);
  EXPECT_EQ(done[0].status.message(), "boom");
  EXPECT_EQ(done[1].state, JobState::kFailed);
  EXPECT_EQ(done[1].status.code(), StatusCode::kInternal);
}

TEST(JobQueue, QueueFullCountsWaitingAndRunning) {
  JobQueue q({.max_depth = 2});
  Completions c;
  Gate gate;
  auto blocked = [&](JobControl&) {
    gate.wait();
    return ok_status();
  };
  ASSERT_EQ(q.submit("a", blocked, c.callback()), SubmitOutcome::kAccepted);
  ASSERT_TRUE(wait_running(q, "a"));
  ASSERT_EQ(q.submit("b", blocked, c.callback()), SubmitOutcome::kAccepted);
  EXPECT_EQ(q.depth(), 2u);
  EXPECT_TRUE(q.full());
  EXPECT_EQ(q.submit("c", blocked, c.callback()), SubmitOutcome::kQueueFull);
  EXPECT_FALSE(q.find("c").has_value());  // nothing of a refused job is kept
  gate.open();
  ASSERT_TRUE(c.wait_for_count(2));
  EXPECT_EQ(c.get().size(), 2u);  // the refused job never calls back
  EXPECT_FALSE(q.full());
}

TEST(JobQueue, DuplicateIdOfAnActiveJobIsRefused) {
  JobQueue q;
  Completions c;
  Gate gate;
  ASSERT_EQ(q.submit("x", [&](JobControl&) { gate.wait(); return ok_status(); }, c.callback()),
            SubmitOutcome::kAccepted);
  EXPECT_EQ(q.submit("x", [](JobControl&) { return ok_status(); }, c.callback()),
            SubmitOutcome::kDuplicateId);
  gate.open();
  ASSERT_TRUE(c.wait_for_count(1));
  // Once finished, the id may be used again.
  EXPECT_EQ(q.submit("x", [](JobControl&) { return ok_status(); }, c.callback()),
            SubmitOutcome::kAccepted);
  ASSERT_TRUE(c.wait_for_count(2));
}

TEST(JobQueue, CancelQueuedJobRemovesItAsInterrupted) {
  JobQueue q;
  Completions c;
  Gate gate;
  std::atomic<bool> second_ran{false};
  ASSERT_EQ(q.submit("first", [&](JobControl&) { gate.wait(); return ok_status(); }, c.callback()),
            SubmitOutcome::kAccepted);
  ASSERT_EQ(q.submit("second", [&](JobControl&) { second_ran = true; return ok_status(); },
                     c.callback()),
            SubmitOutcome::kAccepted);
  ASSERT_TRUE(wait_running(q, "first"));
  EXPECT_TRUE(q.cancel("second"));
  ASSERT_TRUE(c.wait_for_count(1));
  EXPECT_EQ(c.get()[0].id, "second");
  EXPECT_EQ(c.get()[0].state, JobState::kInterrupted);
  EXPECT_EQ(c.get()[0].status.message(), "interrupted");
  EXPECT_EQ(q.depth(), 1u);
  gate.open();
  ASSERT_TRUE(c.wait_for_count(2));
  EXPECT_FALSE(second_ran.load());
  EXPECT_EQ(q.find("second")->state, JobState::kInterrupted);
  EXPECT_EQ(q.find("first")->state, JobState::kSucceeded);
}

TEST(JobQueue, CancelRunningJobFiresItsHook) {
  JobQueue q;
  Completions c;
  // Like an engine job: the hook sets the workspace's flag, the loop checks it per step.
  auto fn = [](JobControl& control) {
    std::atomic<bool> ws_cancel{false};
    control.on_cancel([&] { ws_cancel = true; });
    for (int step = 0; step < 1000; ++step) {
      if (ws_cancel.load()) return cancelled("job cancelled");
      std::this_thread::sleep_for(5ms);
    }
    control.on_cancel(nullptr);
    return ok_status();
  };
  ASSERT_EQ(q.submit("run", fn, c.callback()), SubmitOutcome::kAccepted);
  ASSERT_TRUE(wait_running(q, "run"));
  EXPECT_TRUE(q.cancel("run"));
  ASSERT_TRUE(c.wait_for_count(1, 2s));
  EXPECT_EQ(c.get()[0].state, JobState::kInterrupted);
  EXPECT_EQ(c.get()[0].status.code(), StatusCode::kCancelled);
  EXPECT_EQ(c.get()[0].status.message(), "interrupted");
  EXPECT_FALSE(q.cancel("run"));  // finished: nothing to cancel
  EXPECT_FALSE(q.cancel("never-submitted"));
}

TEST(JobQueue, CancelBeforeHookRegistrationStillReachesTheJob) {
  JobControl control;
  control.request_cancel();
  bool fired = false;
  control.on_cancel([&] { fired = true; });
  EXPECT_TRUE(fired);
  EXPECT_TRUE(control.cancelled());
}

TEST(JobQueue, HistoryExpiresAfterTtl) {
  JobQueue q({.history_ttl = std::chrono::seconds(0)});
  Completions c;
  ASSERT_EQ(q.submit("a", [](JobControl&) { return ok_status(); }, c.callback()),
            SubmitOutcome::kAccepted);
  ASSERT_TRUE(c.wait_for_count(1));
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(q.find("a").has_value());

  JobQueue q2;  // default TTL: still there
  Completions c2;
  ASSERT_EQ(q2.submit("b", [](JobControl&) { return ok_status(); }, c2.callback()),
            SubmitOutcome::kAccepted);
  ASSERT_TRUE(c2.wait_for_count(1));
  auto info = q2.find("b");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->state, JobState::kSucceeded);
  EXPECT_GE(info->run_ms(), 0.0);
}

TEST(JobQueue, DrainWaitsForQueuedAndRunningJobs) {
  JobQueue q;
  Completions c;
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(q.submit(std::to_string(i),
                       [](JobControl&) {
                         std::this_thread::sleep_for(20ms);
                         return ok_status();
                       },
                       c.callback()),
              SubmitOutcome::kAccepted);
  EXPECT_TRUE(q.drain(5s));
  EXPECT_EQ(c.get().size(), 3u);  // every callback has run when drain returns
  for (const auto& info : c.get()) EXPECT_EQ(info.state, JobState::kSucceeded);
  EXPECT_TRUE(q.draining());
  EXPECT_EQ(q.submit("late", [](JobControl&) { return ok_status(); }, c.callback()),
            SubmitOutcome::kDraining);
}

TEST(JobQueue, DrainTimeoutInterruptsWhatIsLeft) {
  JobQueue q;
  Completions c;
  auto slow = [](JobControl& control) {
    std::atomic<bool> stop{false};
    control.on_cancel([&] { stop = true; });
    for (int i = 0; i < 1000 && !stop.load(); ++i) std::this_thread::sleep_for(5ms);
    control.on_cancel(nullptr);
    return stop.load() ? cancelled("job cancelled") : ok_status();
  };
  ASSERT_EQ(q.submit("slow", slow, c.callback()), SubmitOutcome::kAccepted);
  ASSERT_EQ(q.submit("queued", slow, c.callback()), SubmitOutcome::kAccepted);
  ASSERT_TRUE(wait_running(q, "slow"));
  EXPECT_FALSE(q.drain(50ms));
  ASSERT_TRUE(c.wait_for_count(2, 2s));
  for (const auto& info : c.get()) EXPECT_EQ(info.state, JobState::kInterrupted);
  EXPECT_EQ(q.depth(), 0u);
}

TEST(JobQueue, DestructorCompletesQueuedJobs) {
  Completions c;
  Gate gate;
  {
    JobQueue q;
    ASSERT_EQ(q.submit("a",
                       [&](JobControl& control) {
                         control.on_cancel([&] { gate.open(); });
                         gate.wait();
                         control.on_cancel(nullptr);
                         return cancelled("stopped");
                       },
                       c.callback()),
              SubmitOutcome::kAccepted);
    ASSERT_EQ(q.submit("b", [](JobControl&) { return ok_status(); }, c.callback()),
              SubmitOutcome::kAccepted);
    ASSERT_TRUE(wait_running(q, "a"));
  }
  auto done = c.get();
  ASSERT_EQ(done.size(), 2u);
  for (const auto& info : done) EXPECT_EQ(info.state, JobState::kInterrupted);
}

// Progress events: the listener sees every report with the job's id, find() shows the last
// report while the job runs, and the finished JobInfo keeps it.
TEST(JobQueue, ProgressEventsReachTheListenerAndTheSnapshots) {
  std::mutex mu;
  std::vector<std::tuple<std::string, int, int>> events;
  JobQueueOptions options;
  options.on_progress = [&](const std::string& id, int step, int total) {
    std::unique_lock l(mu);
    events.emplace_back(id, step, total);
  };
  JobQueue q(options);
  Completions c;
  Gate reported, finish;
  ASSERT_EQ(q.submit("p",
                     [&](JobControl& control) {
                       control.report_progress(1, 3);
                       control.report_progress(2, 3);
                       reported.open();
                       finish.wait();
                       control.report_progress(3, 3);
                       return ok_status();
                     },
                     c.callback()),
            SubmitOutcome::kAccepted);
  reported.wait();
  auto running = q.find("p");
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(running->state, JobState::kRunning);
  EXPECT_EQ(running->progress_step, 2);
  EXPECT_EQ(running->progress_total, 3);
  finish.open();
  ASSERT_TRUE(c.wait_for_count(1));
  EXPECT_EQ(c.get()[0].progress_step, 3);
  EXPECT_EQ(q.find("p")->progress_step, 3);
  std::unique_lock l(mu);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], std::make_tuple(std::string("p"), 1, 3));
  EXPECT_EQ(events[2], std::make_tuple(std::string("p"), 3, 3));
}

}  // namespace
}  // namespace sd35::service
