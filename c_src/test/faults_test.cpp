// The spawner on older kernels and under failing system calls.
//
// Kernels.*: each newer feature the spawner leans on is taken away as an
// older kernel lacks it (corral_deny: a seccomp filter answering ENOSYS, or
// no cgroup2 mount; corral_inject.so: no cgroup.kill file), and the test
// checks what the fallback must still give (docs/KERNELS.md has one row per
// test).
//
// Faults.*: chosen calls in the spawner fail (corral_inject.so); each must
// end in a clear answer to the caller, with no fd, process or cgroup left
// behind and the spawner serving the next request.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cgroup.h"
#include "child.h"
#include "fd.h"
#include "frame.h"
#include "spawn_support.h"

namespace corral {
namespace {

using namespace std::chrono_literals;
using namespace harness;

#if defined(CORRAL_DENY_PATH) && defined(CORRAL_INJECT_PATH)
constexpr const char* kDeny = CORRAL_DENY_PATH;
constexpr const char* kInject = CORRAL_INJECT_PATH;
#else
constexpr const char* kDeny = nullptr;
constexpr const char* kInject = nullptr;
#endif

class FaultFixture : public SpawnerFixture {
 protected:
  void SetUp() override {
    if (!kDeny)
      GTEST_SKIP() << "corral_deny and corral_inject.so are not built here "
                      "(sanitizer builds leave them out)";
  }

  void TearDown() override {
    SpawnerFixture::TearDown();
    drop_fault_log();
  }

  // A spawner under corral_deny with these options.
  static SpawnerOpts denied(const std::vector<std::string>& deny) {
    SpawnerOpts o;
    o.inherit_preload = false;
    if (deny.empty()) return o;
    o.wrapper.emplace_back(kDeny);
    o.wrapper.insert(o.wrapper.end(), deny.begin(), deny.end());
    o.wrapper.emplace_back("--");
    return o;
  }

  // A spawner with corral_inject.so and these variables (and corral_deny's
  // options, if any), logging what it injects to a fresh file (injected()).
  SpawnerOpts injected_with(const std::vector<std::string>& env,
                            const std::vector<std::string>& deny = {}) {
    drop_fault_log();
    char tmpl[] = "/tmp/corral_faults_injected.XXXXXX";
    EXPECT_GE(unique_fd(mkstemp(tmpl)).get(), 0);
    fault_log_ = tmpl;
    SpawnerOpts o = denied(deny);
    o.env = {std::string("LD_PRELOAD=") + kInject, "CORRAL_FAULT_PROC=corral_spawner",
             "CORRAL_FAULT_LOG=" + fault_log_};
    o.env.insert(o.env.end(), env.begin(), env.end());
    return o;
  }

  // Runs `true` to its Exit: the spawner is then idle, with nothing of a
  // child's left open.
  void round_trip() {
    Handle h;
    ASSERT_NO_FATAL_FAILURE(start({"/bin/true", {"true"}}, h));
    int st = expect_exit(h);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  }

  // The spawner's fds once it is idle again: equal to `before`.
  void expect_fds_back(const std::map<int, std::string>& before) const {
    std::map<int, std::string> now;
    EXPECT_TRUE(eventually([&] {
      now = open_fds(pid_);
      return now.size() == before.size();
    })) << "before: "
        << harness::describe(before) << "\nnow: " << harness::describe(now);
  }

  std::vector<pid_t> live_children() const { return children_of(pid_, /*with_zombies=*/false); }

  std::string injected() const { return slurp(fault_log_); }

 private:
  void drop_fault_log() {
    if (!fault_log_.empty()) unlink(fault_log_.c_str());
    fault_log_.clear();
  }

  std::string fault_log_;
};

using Kernels = FaultFixture;
using Faults = FaultFixture;

// --- older kernels -------------------------------------------------------------

// clone3 (5.3) and CLONE_INTO_CGROUP (5.7): the child joins its leaf itself
// through cgroup.procs, before it does anything else.
TEST_F(Kernels, WithoutClone3ChildrenStillStartInTheirLeaf) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--syscalls", "clone3"})));
  for (int i = 0; i < 3; i++) {
    Handle h;
    ASSERT_NO_FATAL_FAILURE(start(sh("sed -n 's/^0:://p' /proc/self/cgroup"), h));
    ASSERT_FALSE(h.leaf.empty());
    // The leaf's directory is the mount point followed by this path.
    std::string path = read_all(h.out);
    if (!path.empty() && path.back() == '\n') path.pop_back();
    ASSERT_GE(h.leaf.size(), path.size());
    EXPECT_EQ(h.leaf.substr(h.leaf.size() - path.size()), path) << "the child is not in its leaf";
    EXPECT_NE(path.find("/corral."), std::string::npos) << path;
    EXPECT_EQ(expect_exit(h), 0);
  }
  if (spawner::can_clone_into_cgroup()) {
    EXPECT_NE(spawner_log().find("clone3(CLONE_INTO_CGROUP): Function not implemented"),
              std::string::npos)
        << spawner_log();
  }
}

// pidfd_open and pidfd_send_signal (5.3, 5.1): exits are found by
// SIGCHLD and waitpid scans, signals go by pid.
TEST_F(Kernels, WithoutPidfdsExitsAreFoundAndStopsStillKill) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--syscalls", "pidfd_open,pidfd_send_signal"})));
  std::vector<Handle> hs(4);
  for (int i = 0; i < 4; i++)
    ASSERT_NO_FATAL_FAILURE(start(sh("read x; exit " + std::to_string(i)), hs[i]));
  Handle sleeper;
  ASSERT_NO_FATAL_FAILURE(start({"/bin/sleep", {"sleep", "30"}}, sleeper));
  for (const auto& [fd, what] : open_fds(pid_))
    EXPECT_EQ(what.find("pidfd"), std::string::npos) << "fd " << fd << " is a pidfd";
  // Exits in the reverse order of starts, while others still run.
  for (int i = 3; i >= 0; i--) {
    ASSERT_EQ(write(hs[i].in, "\n", 1), 1);
    int st = expect_exit(hs[i]);
    ASSERT_TRUE(WIFEXITED(st)) << i;
    EXPECT_EQ(WEXITSTATUS(st), i);
  }
  ASSERT_EQ(frame::send_frame(sleeper.ctl, frame::StopFrame{}), 0);
  int st = expect_exit(sleeper);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGTERM);
  EXPECT_TRUE(dead(sleeper.pid));
}

// close_range (5.9; CLOSE_RANGE_CLOEXEC 5.11, CLOSE_RANGE_UNSHARE 5.9): the
// child takes its own fd table with unshare(CLONE_FILES) and closes the
// fds above 2 one by one. It must still see only 0, 1 and 2.
TEST_F(Kernels, WithoutCloseRangeTheChildHasOnlyStdio) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--syscalls", "close_range"})));
  // A test run by the shell itself opens nothing, so the shell's table is
  // what it got from the spawner.
  Handle keep;  // another child, so the spawner holds more fds meanwhile
  ASSERT_NO_FATAL_FAILURE(start({"/bin/sleep", {"sleep", "30"}}, keep));
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start(
      sh("i=3; while [ $i -lt 1100 ]; do [ -e /proc/$$/fd/$i ] && echo $i; i=$((i+1)); done; :"),
      h));
  EXPECT_EQ(read_all(h.out), "") << "fds above 2 reached the program";
  EXPECT_EQ(expect_exit(h), 0);
  ASSERT_EQ(frame::send_frame(keep.ctl, frame::SignalFrame{SIGKILL}), 0);
  expect_exit(keep);
}

// cgroup.kill (5.14): a leaf is killed by SIGKILLing each pid its
// cgroup.procs lists, and below, for a few rounds.
TEST_F(Kernels, WithoutCgroupKillAnEscapeeIsStillKilled) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT_HIDE=cgroup.kill"})));
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start(sh("setsid sleep 30 & echo $!; exec sleep 30"), h));
  pid_t esc = read_pid_line(h.out);
  ASSERT_TRUE(eventually([&] { return getsid(esc) == esc; })) << "the escapee stayed";
  ASSERT_EQ(frame::send_frame(h.ctl, frame::SignalFrame{SIGKILL}), 0);
  int st = expect_exit(h);
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_TRUE(dead(esc)) << "the escapee " << esc << " outlived Exit";
  EXPECT_NE(injected().find("open cgroup.kill"), std::string::npos)
      << "cgroup.kill was never asked for: " << injected();
  kill(esc, SIGKILL);
}

// No cgroup v2 (before 4.5, or not mounted where we run): process groups
// and PDEATHSIG only. What that gives up: a descendant that leaves the
// process group (setsid) survives its child's end.
TEST_F(Kernels, WithoutCgroupV2ProcessGroupsAndPdeathsigStillHold) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a mount namespace";
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--no-cgroup"})));
  // A background job in the group is killed with the leader.
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start(sh("sleep 30 & echo $!; exec sleep 30"), h));
  EXPECT_EQ(h.leaf, "") << "a leaf without cgroup v2";
  pid_t job = read_pid_line(h.out);
  ASSERT_EQ(frame::send_frame(h.ctl, frame::StopFrame{}), 0);
  expect_exit(h);
  EXPECT_TRUE(dead(job)) << "the background job " << job << " outlived Exit";
  EXPECT_NE(spawner_log().find("no cgroup containment"), std::string::npos) << spawner_log();

  // Given up: the escapee lives on.
  Handle e;
  ASSERT_NO_FATAL_FAILURE(start(sh("setsid sleep 30 & echo $!; exec sleep 30"), e));
  pid_t esc = read_pid_line(e.out);
  ASSERT_TRUE(eventually([&] { return getsid(esc) == esc; }));
  ASSERT_EQ(frame::send_frame(e.ctl, frame::SignalFrame{SIGKILL}), 0);
  expect_exit(e);
  EXPECT_FALSE(dead(esc)) << "without cgroups nothing should reach an escapee";
  kill(esc, SIGKILL);

  // The spawner's death takes the children with it (PDEATHSIG).
  Handle last;
  ASSERT_NO_FATAL_FAILURE(start({"/bin/sleep", {"sleep", "30"}}, last));
  kill(pid_, SIGKILL);
  EXPECT_TRUE(eventually([&] { return dead(last.pid); })) << "the child outlived the spawner";
}

// --- failing calls ---------------------------------------------------------------

// Each spawn of a default request makes 4 pipes (stdin, stdout, stderr,
// exec status): the 8th pipe2 is the second spawn's status pipe, made after
// its 3 stdio pipes.
TEST_F(Faults, PipeEmfileIsAnErrorAndLeaksNothing) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=pipe2:EMFILE:7:1"})));
  ASSERT_NO_FATAL_FAILURE(round_trip());
  auto before = open_fds(pid_);
  expect_error(encode({"/bin/true", {"true"}}), EMFILE, "pipe");
  EXPECT_EQ(injected(), "pipe2 EMFILE\n");
  expect_fds_back(before);
  ASSERT_NO_FATAL_FAILURE(round_trip());
  expect_fds_back(before);
  EXPECT_TRUE(live_children().empty());
}

// clone failing with ENOMEM or EAGAIN (memory, or RLIMIT_NPROC). clone3 is
// denied so that every child goes through clone() (where clone3 works, the
// same error reaches clone() after clone3 into the leaf failed).
TEST_F(Faults, CloneFailuresAreErrorsAndLeakNothing) {
  for (const char* e : {"ENOMEM", "EAGAIN"}) {
    SCOPED_TRACE(e);
    ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with(
        {std::string("CORRAL_FAULT=clone:") + e + ":1:1"}, {"--syscalls", "clone3"})));
    ASSERT_NO_FATAL_FAILURE(round_trip());
    auto before = open_fds(pid_);
    std::string why, own = writable_v2_dir(why);
    std::string base = own.empty() ? "" : own + "/corral." + std::to_string(pid_);
    size_t leaves = base.empty() ? 0 : subdirs(base).size();
    expect_error(encode({"/bin/true", {"true"}}), strcmp(e, "ENOMEM") == 0 ? ENOMEM : EAGAIN,
                 "fork");
    EXPECT_EQ(injected(), std::string("clone ") + e + "\n");
    expect_fds_back(before);
    if (!base.empty()) {
      // The failed child's leaf is removed (a pooled one may go with it).
      EXPECT_LE(subdirs(base).size(), leaves);
      EXPECT_EQ(spawner::cgroup::populated(base), 0) << base;
    }
    ASSERT_NO_FATAL_FAILURE(round_trip());
    expect_fds_back(before);
    EXPECT_TRUE(live_children().empty());
    stop_spawner();
  }
}

// The control socket is full (EAGAIN) when Fds is sent: the caller sees
// its control socket end without an answer, which the driver reports as
// {spawner_dropped, spawn}; the child is stopped and reaped.
TEST_F(Faults, FdsOnAFullSocketEndsTheRequestAndTheChild) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=sendmsg:EAGAIN:2:1"})));
  ASSERT_NO_FATAL_FAILURE(round_trip());  // Fds, Exit: 2 sends
  auto before = open_fds(pid_);
  unique_fd ctl(send_spawn(encode({"/bin/sleep", {"sleep", "30"}})));
  frame::Frame f;
  std::vector<int> fds;
  EXPECT_EQ(recv(ctl.get(), f, fds), 0) << describe(f);
  EXPECT_EQ(injected(), "sendmsg EAGAIN\n");
  EXPECT_TRUE(eventually([&] { return live_children().empty(); }, 8000ms))
      << "the child whose Fds was lost still runs";
  expect_fds_back(before);
  EXPECT_NE(spawner_log().find("cannot send Fds"), std::string::npos) << spawner_log();
  ASSERT_NO_FATAL_FAILURE(round_trip());
}

// The exec-status pipe cannot be watched (epoll_ctl fails): the spawner
// waits for that child's exec instead, and serves on.
TEST_F(Faults, UnwatchableExecStatusIsWaitedFor) {
  // Startup: request socket, signalfd; each spawn: status pipe, control
  // socket, pidfd. The 6th is the second spawn's status pipe.
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=epoll_ctl:ENOMEM:5:1"})));
  ASSERT_NO_FATAL_FAILURE(round_trip());
  auto before = open_fds(pid_);
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start({"/bin/echo", {"echo", "waited"}}, h));
  EXPECT_EQ(read_all(h.out), "waited\n");
  EXPECT_EQ(expect_exit(h), 0);
  EXPECT_EQ(injected(), "epoll_ctl ENOMEM\n");
  EXPECT_NE(spawner_log().find("cannot watch the exec status"), std::string::npos) << spawner_log();
  expect_fds_back(before);
}

// The spawner dies while it reads a request: the caller's control socket
// ends without an answer (the driver then finds the request socket at EOF:
// {spawner_died, spawn}), and a running child dies with the spawner.
TEST_F(Faults, SpawnerDyingMidRequestEndsTheRequestAndItsChildren) {
  // recvmsg: 1 for the first request, 1 that finds no second (EAGAIN).
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=recvmsg:die:2:1"})));
  Handle running;
  ASSERT_NO_FATAL_FAILURE(start({"/bin/sleep", {"sleep", "30"}}, running));
  unique_fd ctl(send_spawn(encode({"/bin/true", {"true"}})));
  frame::Frame f;
  std::vector<int> fds;
  EXPECT_EQ(recv(ctl.get(), f, fds), 0) << describe(f);
  int st = 0;
  ASSERT_EQ(waitpid(pid_, &st, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
  EXPECT_EQ(injected(), "recvmsg die\n");
  EXPECT_TRUE(eventually([&] { return dead(running.pid); })) << "the child outlived the spawner";
  EXPECT_EQ(recv(running.ctl, f, fds), 0) << "the running child's ctl did not end";
}

}  // namespace
}  // namespace corral
