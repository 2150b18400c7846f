// The start report held back (a request's report_delay): what cmd/3 asks
// for a child it needs nothing from until it exits.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "frame.h"
#include "spawn_support.h"

namespace corral {
namespace {

using namespace std::chrono_literals;
using namespace harness;

class StartReportTest : public SpawnerFixture {
 protected:
  void SetUp() override { start_spawner(); }

  static Request held(const std::string& script, long delay_ms) {
    Request r = sh(script);
    r.report_delay = delay_ms;
    return r;
  }
};

// A child that exits within the delay is reported with its Exit: when the
// Fds frame arrives it has been reaped already, and its output is whole.
TEST_F(StartReportTest, AShortChildIsReportedWithItsExit) {
  Handle h;
  start(held("echo hi; sleep 0.2", 1000), h);
  EXPECT_TRUE(gone(h.pid)) << "the Fds frame came while the child still ran";
  EXPECT_EQ(read_all(h.out), "hi\n");
  int st = expect_exit(h);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

// Without a delay the report comes at exec, while the child runs.
TEST_F(StartReportTest, WithoutADelayTheReportComesAtExec) {
  Handle h;
  start(sh("echo hi; sleep 0.2"), h);
  EXPECT_FALSE(gone(h.pid));
  EXPECT_EQ(read_all(h.out), "hi\n");
  EXPECT_EQ(expect_exit(h), 0);
}

// A child that runs on is reported once the delay is over, not at its exit.
TEST_F(StartReportTest, ALongChildIsReportedWhenTheDelayEnds) {
  Handle h;
  start(held("echo up; exec sleep 30", 50), h);
  EXPECT_FALSE(gone(h.pid)) << "reported only at its exit";
  EXPECT_EQ(read_line(h.out), "up");
  send_ctl(h, frame::StopFrame{});
  int st = expect_exit(h);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM) << st;
}

// Stop works while the report is held; the report still precedes the Exit.
TEST_F(StartReportTest, StopWhileTheReportIsHeld) {
  Handle h;
  h.ctl = send_spawn(encode(held("exec sleep 30", 1000)));
  send_ctl(h, frame::StopFrame{});
  frame::Frame f;
  std::vector<int> fds;
  ASSERT_EQ(recv(h.ctl, f, fds), 1);
  ASSERT_TRUE(std::holds_alternative<frame::FdsFrame>(f)) << describe(f);
  for (int fd : fds) close(fd);
  int st = expect_exit(h);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM) << st;
}

// An owner that goes while the report is held: the child is stopped, and
// the spawner keeps none of its pipes.
TEST_F(StartReportTest, OwnerGoneWhileTheReportIsHeld) {
  {
    Handle warm;  // the spawner has its fixed fds (epoll set, base, ...)
    start(sh("exit 0"), warm);
    EXPECT_EQ(expect_exit(warm), 0);
  }
  auto before_fds = open_fds(pid_);
  size_t before = before_fds.size();
  int ctl = send_spawn(encode(held("exec sleep 30", 1000)));
  pid_t child = -1;
  ASSERT_TRUE(eventually([&] {
    for (pid_t p : children_of(pid_, false))
      if (slurp("/proc/" + std::to_string(p) + "/comm") == "sleep\n") child = p;
    return child > 0;
  })) << "the child never exec'd";
  close(ctl);
  EXPECT_TRUE(eventually([&] { return gone(child); }));
  EXPECT_TRUE(eventually([&] { return open_fds(pid_).size() == before; }))
      << harness::describe(before_fds) << " -> " << harness::describe(open_fds(pid_));
}

}  // namespace
}  // namespace corral
