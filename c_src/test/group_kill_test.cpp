// kill_tree, kill_cgroup and kill_cgroup_procs (c_src/common/group_kill.h)
// on real process trees: a group with a member that left it (setsid), and,
// where this process's cgroup v2 tree is writable, a leaf cgroup.
#include "group_kill.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>

#include "cgroup.h"
#include "fd.h"

namespace {

using namespace std::chrono_literals;

// A child that leads its own process group, in `procs_fd`'s cgroup when
// that is >= 0, with a grandchild that either stays in the group or leaves
// it (setsid). Both hold the write end of a pipe: its read end sees EOF
// once both are dead.
struct Tree {
  pid_t leader = -1;
  pid_t grandchild = -1;
  int alive = -1;  // read end

  bool start(bool escape, int procs_fd) {
    int alive_pipe[2], ready[2];
    if (pipe2(alive_pipe, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) return false;
    leader = fork();
    if (leader == 0) {
      setpgid(0, 0);
      if (procs_fd >= 0 && write(procs_fd, "0", 1) != 1) _exit(1);
      pid_t g = fork();
      if (g == 0) {
        if (escape) setsid();
        pid_t self = getpid();
        (void)!write(ready[1], &self, sizeof self);
        for (;;) pause();
      }
      for (;;) pause();
    }
    close(alive_pipe[1]);
    close(ready[1]);
    alive = alive_pipe[0];
    bool ok = read(ready[0], &grandchild, sizeof grandchild) == sizeof grandchild;
    close(ready[0]);
    return ok;
  }

  // Whether both are dead within 3 s (EOF on the pipe).
  bool dies() {
    pollfd p{alive, POLLIN, 0};
    if (poll(&p, 1, 3000) != 1) return false;
    char c;
    return read(alive, &c, 1) == 0;
  }

  ~Tree() {
    if (grandchild > 0) kill(grandchild, SIGKILL);
    if (leader > 0) {
      kill(leader, SIGKILL);
      waitpid(leader, nullptr, 0);
    }
    if (alive >= 0) close(alive);
  }
  Tree() = default;
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;
};

int leader_signal(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

TEST(KillTree, KillsTheWholeGroup) {
  Tree t;
  ASSERT_TRUE(t.start(false, -1));
  corral::TreeKill r = corral::kill_tree(t.leader, "");
  EXPECT_EQ(r.group, 0);
  EXPECT_EQ(r.leaf, 0);
  EXPECT_TRUE(t.dies());
  EXPECT_EQ(leader_signal(t.leader), SIGKILL);
  t.leader = -1;
}

TEST(KillTree, ReportsAnEmptyGroupAndAMissingLeaf) {
  corral::TreeKill r = corral::kill_tree(0, "/nonexistent/corral-leaf");
  EXPECT_EQ(r.group, 0);  // no group given: nothing signalled
  EXPECT_EQ(r.leaf, -ENOENT);
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  EXPECT_EQ(corral::kill_tree(pid, "").group, -ESRCH);
  EXPECT_EQ(corral::kill_cgroup_procs("/nonexistent/corral-leaf"), -ENOENT);
}

// Each test gets a leaf corral.<our pid> in our own v2 cgroup (the name a
// spawner's stale-base sweep removes if we crash).
class KillTreeCgroup : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    std::string own;
    int rc = corral::spawner::cgroup::own_v2_dir(own);
    if (rc < 0) GTEST_SKIP() << "no cgroup v2 tree holds this process: " << strerror(-rc);
    leaf_ = own + "/corral." + std::to_string(getpid());
    if (mkdir(leaf_.c_str(), 0755) < 0) {
      int e = errno;
      leaf_.clear();
      GTEST_SKIP() << "cannot write the cgroup v2 tree at " << own << ": " << strerror(e);
    }
    procs_ = open((leaf_ + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(procs_, 0) << strerror(errno);
  }

  void TearDown() override {
    if (procs_ >= 0) close(procs_);
    if (leaf_.empty()) return;
    (void)corral::kill_cgroup(leaf_);
    for (int i = 0; i < 300 && corral::spawner::cgroup::populated(leaf_) > 0; i++)
      std::this_thread::sleep_for(10ms);
    for (const std::string& d : {leaf_ + "/inner", leaf_}) rmdir(d.c_str());
    struct stat st;
    EXPECT_NE(stat(leaf_.c_str(), &st), 0) << leaf_ << " is left behind";
  }

  std::string leaf_;
  int procs_ = -1;
};

// The reason for the leaf: a descendant that left the group survives a
// group kill.
TEST_F(KillTreeCgroup, GroupAloneMissesAnEscapee) {
  Tree t;
  ASSERT_TRUE(t.start(true, procs_));
  EXPECT_EQ(corral::kill_tree(t.leader, "").group, 0);
  EXPECT_EQ(leader_signal(t.leader), SIGKILL);
  t.leader = -1;
  pollfd p{t.alive, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 200), 0) << "the escapee died with the group";
  EXPECT_EQ(corral::spawner::cgroup::populated(leaf_), 1);
}

TEST_F(KillTreeCgroup, LeafCatchesAnEscapee) {
  Tree t;
  ASSERT_TRUE(t.start(true, procs_));
  corral::TreeKill r = corral::kill_tree(t.leader, leaf_);
  EXPECT_EQ(r.group, 0);
  EXPECT_EQ(r.leaf, 0);
  EXPECT_TRUE(t.dies());
  EXPECT_EQ(leader_signal(t.leader), SIGKILL);
  t.leader = -1;
}

// The path taken on kernels without cgroup.kill, run directly: it finds
// processes in nested cgroups too.
TEST_F(KillTreeCgroup, ProcsFallbackReachesNestedCgroups) {
  std::string inner = leaf_ + "/inner";
  ASSERT_EQ(mkdir(inner.c_str(), 0755), 0) << strerror(errno);
  corral::unique_fd inner_procs(open((inner + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(inner_procs) << strerror(errno);
  Tree t;
  bool started = t.start(true, inner_procs.get());
  inner_procs.reset();
  ASSERT_TRUE(started);
  EXPECT_GE(corral::kill_cgroup_procs(leaf_), 2);
  EXPECT_TRUE(t.dies());
  EXPECT_EQ(leader_signal(t.leader), SIGKILL);
  t.leader = -1;
}

}  // namespace
