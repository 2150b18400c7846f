// The port lifecycle table of the driver (c_src/driver/lifecycle.h): the
// properties corral_drv.cpp relies on.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "lifecycle.h"

using namespace corral::driver;

namespace {

const std::vector<Phase> kPhases = {Phase::Idle,      Phase::Spawning,    Phase::Running,
                                    Phase::FdsLost,   Phase::JudgingLoss, Phase::Draining,
                                    Phase::Terminated};

std::set<Phase> reachable(Phase from) {
  std::set<Phase> seen{from};
  std::vector<Phase> todo{from};
  while (!todo.empty()) {
    Phase p = todo.back();
    todo.pop_back();
    for (Phase q : kPhases)
      if (legal(p, q) && seen.insert(q).second) todo.push_back(q);
  }
  return seen;
}

// However a port goes, it can always still send its terminal message.
TEST(DriverLifecycle, EveryPhaseCanReachTerminated) {
  for (Phase p : kPhases) EXPECT_TRUE(reachable(p).count(Phase::Terminated)) << name(p);
}

// One terminal message: nothing leaves Terminated, and only Draining (the
// outcome is known) leads there.
TEST(DriverLifecycle, TerminatedOnlyFromDrainingAndFinal) {
  for (Phase p : kPhases) {
    EXPECT_FALSE(legal(Phase::Terminated, p)) << name(p);
    EXPECT_EQ(legal(p, Phase::Terminated), p == Phase::Draining) << name(p);
  }
}

// One spawn per port, and no way back to an earlier phase.
TEST(DriverLifecycle, NoWayBack) {
  EXPECT_EQ(reachable(Phase::Idle).size(), kPhases.size());
  for (Phase p : kPhases) {
    EXPECT_EQ(legal(Phase::Idle, p), p == Phase::Spawning) << name(p);
    EXPECT_EQ(legal(p, Phase::Running), p == Phase::Spawning) << name(p);
    for (Phase q : kPhases) {
      if (p != q && legal(p, q)) {
        EXPECT_FALSE(reachable(q).count(p)) << name(p) << " " << name(q);
      }
    }
    EXPECT_FALSE(legal(p, p)) << name(p);
  }
}

// Signal and Stop need the control socket (open from Spawning until the
// spawner closes it) and a child whose outcome is not known yet.
TEST(DriverLifecycle, SignalableWhileTheOutcomeIsOpen) {
  for (Phase p : kPhases) {
    bool expected = p == Phase::Spawning || p == Phase::Running || p == Phase::FdsLost;
    EXPECT_EQ(signalable(p), expected) << name(p);
  }
}

TEST(DriverLifecycle, StdinOnlyCloses) {
  EXPECT_TRUE(legal(Stdin::Open, Stdin::Closing));
  EXPECT_TRUE(legal(Stdin::Open, Stdin::Closed));
  EXPECT_TRUE(legal(Stdin::Closing, Stdin::Closed));
  for (Stdin s : {Stdin::Open, Stdin::Closing, Stdin::Closed}) {
    EXPECT_FALSE(legal(Stdin::Closed, s)) << name(s);
    EXPECT_FALSE(legal(s, Stdin::Open)) << name(s);
  }
}

}  // namespace
