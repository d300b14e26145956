// Graph capture of MMDiT forwards (EngineOptions::cuda_graphs, pipeline/captured_forwards.h)
// on the simulated device: its backend records ops with their tensor views during a capture
// and replays the recording on whatever those addresses hold, and it fails allocations and
// host transfers while capturing — the constraints of CUDA stream capture. So a forward that
// bakes a host value into the recording (a timestep, a stale buffer address) or transfers
// inside it gives different bytes or a refused capture here, as it would on a GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/transfer.h"
#include "core/arena.h"
#include "pipeline/captured_forwards.h"
#include "pipeline/engine.h"
#include "sim_device.h"
#include "tiny_engine.h"

namespace sd35 {
namespace {

using ::sd35::testing::euler_params;
using ::sd35::testing::SimBackend;
using ::sd35::testing::SimMemory;
using ::sd35::testing::tiny_options;

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.data(), b.data(), size_t(a.numel()) * a.element_size()) == 0;
}

// y = a + b on the simulated device, with `a` re-uploaded before every call.
struct AddFixture {
  std::shared_ptr<SimMemory> memory = std::make_shared<SimMemory>();
  SimBackend be{make_cpu_backend(1), memory};
  Arena arena{*memory};
  Tensor a = *arena.tensor({4}, DType::kF32), b = *arena.tensor({4}, DType::kF32);
  Tensor y = *arena.tensor({4}, DType::kF32);
  Status set(const Tensor& t, std::vector<float> v) { return upload_bytes(be, v.data(), t); }
  std::vector<float> get() {
    std::vector<float> v(4);
    EXPECT_TRUE(download_bytes(be, y, v.data()).ok());
    return v;
  }
};

TEST(CapturedForwards, EagerThenCaptureThenReplayReadsCurrentInputs) {
  AddFixture f;
  ASSERT_TRUE(f.set(f.b, {10, 20, 30, 40}).ok());
  std::vector<std::string> logged;
  CapturedForwards graphs(f.be, [&](const std::string& m) { logged.push_back(m); });
  auto forward = [&] { return f.be.add(f.a, f.b, f.y); };
  for (int call = 0; call < 4; ++call) {
    const float base = float(call);
    ASSERT_TRUE(f.set(f.a, {base, base + 1, base + 2, base + 3}).ok());
    ASSERT_TRUE(graphs.run({4, 1}, forward).ok()) << "call " << call;
    EXPECT_EQ(f.get(), (std::vector<float>{base + 10, base + 21, base + 32, base + 43}))
        << "call " << call;
    // Call 0 runs eagerly, call 1 is captured (and replayed at once), later calls replay.
    EXPECT_EQ(graphs.replays(), std::max(0, call));
  }
  EXPECT_EQ(graphs.captures(), 1);
  EXPECT_EQ(f.be.replays(), 3);
  EXPECT_TRUE(logged.empty());
  // Another key is a separate kind of forward: eager first again.
  ASSERT_TRUE(graphs.run({4, 2}, forward).ok());
  EXPECT_EQ(graphs.replays(), 3);
}

TEST(CapturedForwards, UncapturableForwardRunsEagerlyAndIsReportedOnce) {
  AddFixture f;
  ASSERT_TRUE(f.set(f.b, {1, 1, 1, 1}).ok());
  std::vector<std::string> logged;
  CapturedForwards graphs(f.be, [&](const std::string& m) { logged.push_back(m); });
  std::vector<float> host_a(4);
  // Uploads inside the forward: allowed eagerly, refused while capturing.
  auto forward = [&]() -> Status {
    SD35_RETURN_IF_ERROR(upload_bytes(f.be, host_a.data(), f.a));
    return f.be.add(f.a, f.b, f.y);
  };
  for (int call = 0; call < 4; ++call) {
    host_a.assign(4, float(call));
    ASSERT_TRUE(graphs.run({7}, forward).ok()) << "call " << call;
    EXPECT_EQ(f.get(), std::vector<float>(4, float(call + 1))) << "call " << call;
  }
  EXPECT_EQ(graphs.captures(), 0);
  EXPECT_EQ(graphs.replays(), 0);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_NE(logged[0].find("graph capture failed"), std::string::npos) << logged[0];
}

TEST(CapturedForwards, BackendWithoutCaptureRunsEverythingEagerly) {
  AddFixture f;
  f.be.enable_capture(false);
  CapturedForwards graphs(f.be, nullptr);
  ASSERT_TRUE(f.set(f.a, {1, 2, 3, 4}).ok());
  ASSERT_TRUE(f.set(f.b, {0, 0, 0, 0}).ok());
  for (int call = 0; call < 3; ++call)
    ASSERT_TRUE(graphs.run({1}, [&] { return f.be.add(f.a, f.b, f.y); }).ok());
  EXPECT_EQ(graphs.replays(), 0);
  EXPECT_EQ(f.be.replays(), 0);
}

// The engine on the simulated device with cuda_graphs, against the CPU engine.
class EngineGraphsTest : public ::testing::Test {
 protected:
  static Result<std::unique_ptr<Engine>> sim_engine(const std::shared_ptr<SimMemory>& memory,
                                                    bool graphs, std::vector<std::string>* log) {
    EngineOptions o = tiny_options();
    o.text_device = "gpu";
    o.weight_memory = memory;
    o.cuda_graphs = graphs;
    o.backend_factory = [memory]() -> Result<std::unique_ptr<Backend>> {
      return std::unique_ptr<Backend>(new SimBackend(make_cpu_backend(), memory));
    };
    if (log) o.log = [log](const std::string& m) { log->push_back(m); };
    return Engine::load(o);
  }
  // An engine with cuda_graphs on the simulated device, and a workspace of it.
  static void start_sim(std::vector<std::string>* log, std::unique_ptr<Engine>* engine,
                        std::unique_ptr<Workspace>* ws) {
    auto e = sim_engine(std::make_shared<SimMemory>(), true, log);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    auto w = (*e)->make_workspace();
    ASSERT_TRUE(w.ok()) << w.status().to_string();
    *engine = std::move(e).value();
    *ws = std::move(w).value();
  }
  static GenerateResult cpu_result(const GenerateParams& p) {
    auto e = Engine::load(tiny_options());
    EXPECT_TRUE(e.ok()) << e.status().to_string();
    auto ws = (*e)->make_workspace();
    EXPECT_TRUE(ws.ok());
    auto r = (*e)->generate(**ws, p);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return *std::move(r);
  }
};

TEST_F(EngineGraphsTest, ReplayedStepsAreBitIdenticalToTheCpuEngine) {
  // Euler with cfg (one batched cond+uncond forward per step), dpmpp_2m with more steps, and
  // skip-layer guidance (a second kind of forward, with skipped layers, on some steps).
  std::vector<GenerateParams> cases;
  cases.push_back(euler_params());
  GenerateParams dpm = euler_params();
  dpm.sample.sampler = Sampler::kDpmpp2m;
  dpm.sample.steps = 7;
  dpm.width = 64, dpm.height = 96;
  cases.push_back(dpm);
  GenerateParams slg = euler_params();
  slg.sample.steps = 8;
  slg.sample.slg.layers = {1};
  slg.sample.slg.start_percent = 0.0;
  slg.sample.slg.end_percent = 0.6;
  cases.push_back(slg);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    const GenerateResult want = cpu_result(cases[i]);
    std::vector<std::string> log;
    std::unique_ptr<Engine> e;
    std::unique_ptr<Workspace> ws;
    start_sim(&log, &e, &ws);
    if (HasFatalFailure()) return;
    auto r = e->generate(*ws, cases[i]);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(same_bytes(r->latent, want.latent));
    EXPECT_TRUE(same_bytes(r->image, want.image));
    EXPECT_EQ(r->timings.model_calls, want.timings.model_calls);
    // Every kind of forward runs eagerly once; all later ones are replays. With SLG there are
    // three kinds: cond+uncond, the cond-only pass with skipped layers, and cond+uncond again
    // above the SLG pass's conditioning (uploaded into the arena at its first use, which moves
    // the arena mark the later forwards start from).
    const int kinds = i == 2 ? 3 : 1;
    EXPECT_EQ(r->timings.graph_replays, r->timings.model_calls - kinds);
    auto* sim = dynamic_cast<SimBackend*>(&ws->backend());
    ASSERT_NE(sim, nullptr);
    EXPECT_EQ(sim->replays(), r->timings.graph_replays);
    EXPECT_EQ(sim->rejected(), 0);
    for (const std::string& m : log) EXPECT_EQ(m.find("graph capture failed"), std::string::npos) << m;
    // The same workspace again (warm arena, new sample() call: new captures).
    auto again = e->generate(*ws, cases[i]);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    EXPECT_TRUE(same_bytes(again->image, want.image));
  }
}

TEST_F(EngineGraphsTest, RefusedCapturesFallBackToEagerForwards) {
  const GenerateParams p = euler_params();
  const GenerateResult want = cpu_result(p);
  std::vector<std::string> log;
  std::unique_ptr<Engine> e;
  std::unique_ptr<Workspace> ws;
  start_sim(&log, &e, &ws);
  if (HasFatalFailure()) return;
  auto* sim = dynamic_cast<SimBackend*>(&ws->backend());
  ASSERT_NE(sim, nullptr);
  sim->refuse_captures(true);
  auto r = e->generate(*ws, p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(same_bytes(r->image, want.image));
  EXPECT_EQ(r->timings.graph_replays, 0);
  EXPECT_EQ(sim->replays(), 0);
  int failures = 0;
  for (const std::string& m : log) failures += m.find("graph capture failed") != std::string::npos;
  EXPECT_EQ(failures, 1);
}

TEST_F(EngineGraphsTest, OffByDefault) {
  auto memory = std::make_shared<SimMemory>();
  auto e = sim_engine(memory, false, nullptr);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  auto ws = (*e)->make_workspace();
  ASSERT_TRUE(ws.ok());
  auto r = (*e)->generate(**ws, euler_params());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->timings.graph_replays, 0);
  EXPECT_FALSE(EngineOptions{}.cuda_graphs);
}

}  // namespace
}  // namespace sd35
