// Tests for the spawner's cgroup v2 helpers: parsing mountinfo and
// /proc/self/cgroup samples, and (as root, on a writable v2 tree) making,
// killing and removing real cgroups.
#include "cgroup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "child.h"
#include "spawn_support.h"

namespace corral::spawner::cgroup {
namespace {

using namespace std::chrono_literals;
using namespace harness;  // exists, dead, eventually, reaped_in_time, read_line

// --- parsers -------------------------------------------------------------------

// This CI host: v1 controllers plus a controller-less v2 tree.
constexpr const char* kHybridMountinfo =
    "22 1 8:1 / / rw,relatime - ext4 /dev/root rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
constexpr const char* kHybridCgroup =
    "9:name=systemd:/\n"
    "8:pids:/\n"
    "4:memory:/process_api/c02c8857\n"
    "1:cpu:/\n"
    "0::/\n";

// A systemd host in unified mode (optional fields before the separator).
constexpr const char* kPureMountinfo =
    "24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
    "25 24 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "26 25 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:3 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";
constexpr const char* kPureCgroup = "0::/user.slice/user-1000.slice/session-2.scope\n";

// A legacy host: no cgroup2 anywhere.
constexpr const char* kLegacyMountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
constexpr const char* kLegacyCgroup = "4:memory:/\n1:name=systemd:/user.slice\n";

TEST(CgroupParse, HybridFindsTheUnifiedMount) {
  Mount m;
  ASSERT_EQ(parse_v2_mount(kHybridMountinfo, m), 0);
  EXPECT_EQ(m.point, "/sys/fs/cgroup/unified");
  EXPECT_EQ(m.root, "/");
  std::string path, dir;
  ASSERT_EQ(parse_v2_path(kHybridCgroup, path), 0);
  EXPECT_EQ(path, "/");
  ASSERT_EQ(v2_dir(m, path, dir), 0);
  EXPECT_EQ(dir, "/sys/fs/cgroup/unified");
}

TEST(CgroupParse, PureV2) {
  Mount m;
  ASSERT_EQ(parse_v2_mount(kPureMountinfo, m), 0);
  EXPECT_EQ(m.point, "/sys/fs/cgroup");
  std::string path, dir;
  ASSERT_EQ(parse_v2_path(kPureCgroup, path), 0);
  EXPECT_EQ(path, "/user.slice/user-1000.slice/session-2.scope");
  ASSERT_EQ(v2_dir(m, path, dir), 0);
  EXPECT_EQ(dir, "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope");
}

TEST(CgroupParse, NoV2IsEnoent) {
  Mount m;
  EXPECT_EQ(parse_v2_mount(kLegacyMountinfo, m), -ENOENT);
  EXPECT_EQ(parse_v2_mount("", m), -ENOENT);
  std::string path;
  EXPECT_EQ(parse_v2_path(kLegacyCgroup, path), -ENOENT);
  EXPECT_EQ(parse_v2_path("0::\n", path), -ENOENT);
}

TEST(CgroupParse, EscapedMountPointAndNoTrailingNewline) {
  Mount m;
  ASSERT_EQ(parse_v2_mount("50 1 0:40 / /mnt/my\\040cg\\134x rw - cgroup2 none rw", m), 0);
  EXPECT_EQ(m.point, "/mnt/my cg\\x");
  std::string path;
  ASSERT_EQ(parse_v2_path("0::/a b", path), 0);
  EXPECT_EQ(path, "/a b");
}

TEST(CgroupParse, MountOfASubtree) {
  Mount m{"/sys/fs/cgroup", "/docker/abc"};
  std::string dir;
  ASSERT_EQ(v2_dir(m, "/docker/abc/x", dir), 0);
  EXPECT_EQ(dir, "/sys/fs/cgroup/x");
  ASSERT_EQ(v2_dir(m, "/docker/abc", dir), 0);
  EXPECT_EQ(dir, "/sys/fs/cgroup");
  EXPECT_EQ(v2_dir(m, "/docker/abcd", dir), -ENOENT);
  EXPECT_EQ(v2_dir(m, "/other", dir), -ENOENT);
  EXPECT_EQ(v2_dir(Mount{"/sys/fs/cgroup", "/"}, "/..", dir), -ENOENT);
}

TEST(CgroupParse, Populated) {
  EXPECT_EQ(parse_populated("populated 1\nfrozen 0\n"), 1);
  EXPECT_EQ(parse_populated("populated 0\nfrozen 0\n"), 0);
  EXPECT_EQ(parse_populated("frozen 0\npopulated 0"), 0);
  EXPECT_EQ(parse_populated("frozen 0\n"), -EBADMSG);
  EXPECT_EQ(parse_populated(""), -EBADMSG);
}

// --- the live system ---------------------------------------------------------------

// The line "0::/..." of /proc/<pid>/cgroup, without "0::".
std::string v2_path_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cgroup");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string path;
  return parse_v2_path(ss.str(), path) == 0 ? path : "?";
}

// Each test gets a fresh directory corral.<our pid> in our own v2 cgroup
// (a name that a spawner starting meanwhile sees as alive, and that one
// starting after a crash here cleans up).
class CgroupLive : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    int rc = own_v2_dir(own_);
    if (rc < 0) GTEST_SKIP() << "no cgroup v2 tree: " << strerror(-rc);
    rc = Dir::make(own_ + "/corral." + std::to_string(getpid()), base_);
    if (rc < 0)
      GTEST_SKIP() << "cannot write the cgroup v2 tree at " << own_ << ": " << strerror(-rc);
  }
  void TearDown() override {
    if (base_) {
      EXPECT_EQ(base_.destroy(1000ms), 0);
    }
  }

  std::string own_;
  Dir base_;
};

TEST_F(CgroupLive, LeafIsMadeAndRemoved) {
  std::string path = base_.path() + "/c0";
  {
    Dir leaf;
    ASSERT_EQ(Dir::make(path, leaf), 0);
    EXPECT_EQ(leaf.path(), path);
    EXPECT_TRUE(exists(path + "/cgroup.procs"));
    EXPECT_EQ(leaf.populated(), 0);
    Dir again;
    EXPECT_EQ(Dir::make(path, again), -EEXIST);
    EXPECT_FALSE(again);
  }
  EXPECT_FALSE(exists(path)) << "the destructor did not remove the leaf";
  Dir leaf;
  ASSERT_EQ(Dir::make(path, leaf), 0);
  ASSERT_EQ(leaf.remove(), 0);
  EXPECT_FALSE(leaf);
  EXPECT_FALSE(exists(path));
}

// clone3(CLONE_INTO_CGROUP): the child is born in the leaf, with no
// cgroup.procs fallback given at all.
TEST_F(CgroupLive, ChildIsClonedStraightIntoTheLeaf) {
  Dir leaf;
  ASSERT_EQ(Dir::make(base_.path() + "/direct", leaf), 0);
  corral::unique_fd dir(open(leaf.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir) << strerror(errno);
  SpawnSpec s;
  s.path = "/bin/sleep";
  s.argv = {"sleep", "30"};
  ChildContext ctx;
  ctx.cgroup_dir = dir.get();  // and cgroup_procs stays -1
  SpawnResult r = spawn_child(s, ctx);
  dir.reset();
  ASSERT_TRUE(r.ok) << r.stage << ": " << strerror(r.error);
  std::string ours = v2_path_of(getpid());
  std::string rel = leaf.path().substr(own_.size());
  EXPECT_EQ(v2_path_of(r.child.pid), ours == "/" ? rel : ours + rel);
  EXPECT_EQ(leaf.populated(), 1);
  kill(r.child.pid, SIGKILL);
  int st = 0;
  ASSERT_TRUE(reaped_in_time(r.child.pid, st));
}

TEST_F(CgroupLive, KillKillsEveryProcessPlacedInItEscapeesToo) {
  Dir leaf;
  ASSERT_EQ(Dir::make(base_.path() + "/c0", leaf), 0);
  int procs = leaf.open_procs();
  ASSERT_GE(procs, 0) << strerror(-procs);
  SpawnSpec s;
  s.path = "/bin/sh";
  // The background setsid does not fork (it is not a group leader), so $!
  // is the pid of the sleep in its own session.
  s.argv = {"sh", "-c", "setsid sleep 30 & echo $!; exec sleep 30"};
  s.env = {"PATH=/usr/bin:/bin"};
  ChildContext ctx;
  ctx.cgroup_procs = procs;
  SpawnResult r = spawn_child(s, ctx);
  close(procs);
  ASSERT_TRUE(r.ok) << r.stage << ": " << strerror(r.error);
  pid_t esc = static_cast<pid_t>(std::stol(read_line(r.child.out.get())));
  EXPECT_TRUE(eventually([&] { return getsid(esc) == esc; }))
      << "the background job did not leave the session";
  std::string ours = v2_path_of(getpid());
  std::string rel = leaf.path().substr(own_.size());  // "/corral.<pid>/c0"
  EXPECT_EQ(v2_path_of(r.child.pid), ours == "/" ? rel : ours + rel);
  EXPECT_EQ(v2_path_of(esc), v2_path_of(r.child.pid));
  EXPECT_EQ(leaf.populated(), 1);

  ASSERT_EQ(leaf.kill(), 0);
  int st = 0;
  ASSERT_TRUE(reaped_in_time(r.child.pid, st)) << "the process in the cgroup survived";
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  EXPECT_TRUE(eventually([&] { return dead(esc); })) << "the escapee survived cgroup.kill";
  EXPECT_TRUE(eventually([&] { return leaf.populated() == 0; }));
  EXPECT_EQ(leaf.remove(), 0);
}

TEST_F(CgroupLive, JoinFailureIsTheCgroupStage) {
  Dir leaf;
  ASSERT_EQ(Dir::make(base_.path() + "/c0", leaf), 0);
  int procs = leaf.open_procs();
  ASSERT_GE(procs, 0);
  ASSERT_EQ(leaf.remove(), 0);
  SpawnSpec s;
  s.path = "/bin/true";
  s.argv = {"true"};
  ChildContext ctx;
  ctx.cgroup_procs = procs;  // its cgroup is gone: the write fails
  SpawnResult r = spawn_child(s, ctx);
  close(procs);
  ASSERT_FALSE(r.ok);
  EXPECT_STREQ(r.stage, "cgroup");
  EXPECT_NE(r.error, 0);
}

TEST_F(CgroupLive, DestroyRemovesANestedTree) {
  Dir a;
  ASSERT_EQ(Dir::make(base_.path() + "/a", a), 0);
  ASSERT_EQ(mkdir((a.path() + "/b").c_str(), 0755), 0);
  EXPECT_EQ(a.destroy(100ms), 0);
  EXPECT_FALSE(exists(base_.path() + "/a"));
}

// A child that runs Corral itself leaves its spawner's base inside our leaf.
TEST_F(CgroupLive, RemoveTakesEmptyNestedCgroupsToo) {
  Dir a;
  ASSERT_EQ(Dir::make(base_.path() + "/a", a), 0);
  ASSERT_EQ(mkdir((a.path() + "/corral.1").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((a.path() + "/corral.1/c0").c_str(), 0755), 0);
  EXPECT_EQ(a.remove(), 0);
  EXPECT_FALSE(a);
  EXPECT_FALSE(exists(base_.path() + "/a"));
}

TEST_F(CgroupLive, MakeBaseRemovesStaleBasesAndKillsWhatIsInThem) {
  pid_t dead_pid = reaped_pid();
  ASSERT_GT(dead_pid, 0);
  // A spawner starting meanwhile (tests run in parallel) may remove the base
  // before the process is in it; then build it again.
  std::string stale = own_ + "/corral." + std::to_string(dead_pid);
  SpawnResult r;
  for (int attempt = 0; attempt < 20 && !r.ok; attempt++) {
    if (mkdir(stale.c_str(), 0755) < 0 && errno != EEXIST) FAIL() << strerror(errno);
    if (mkdir((stale + "/c7").c_str(), 0755) < 0 && errno != EEXIST) continue;
    int procs = open((stale + "/c7/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (procs < 0) continue;
    SpawnSpec s;
    s.path = "/bin/sleep";
    s.argv = {"sleep", "30"};
    ChildContext ctx;
    ctx.cgroup_procs = procs;
    r = spawn_child(s, ctx);
    close(procs);
  }
  ASSERT_TRUE(r.ok) << r.stage;

  // make_base would take corral.<our pid>, which the fixture holds.
  ASSERT_EQ(base_.destroy(100ms), 0);
  Dir base;
  std::string why;
  ASSERT_EQ(make_base(getpid(), base, why), 0) << why;
  EXPECT_EQ(base.path(), own_ + "/corral." + std::to_string(getpid()));
  EXPECT_FALSE(exists(base.path() + "/probe"));
  EXPECT_FALSE(exists(stale)) << "the stale base is still there";
  int st = 0;
  ASSERT_TRUE(reaped_in_time(r.child.pid, st)) << "the process in the stale base survived";
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  base_ = std::move(base);
}

}  // namespace
}  // namespace corral::spawner::cgroup
