// Tests for delegation: whether a uid may change a cgroup (owner and mode
// bits, as systemd's Delegate= sets them), the cgroup_info term, the fix
// named in permission errors, and (as root, on a v2 tree) make_base run as
// nobody in a delegated and in an undelegated group.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "cgroup.h"
#include "cgroup_info.h"
#include "spawn_support.h"
#include "sysfs.h"

namespace corral::spawner::cgroup {
namespace {

using harness::as_nobody;

constexpr uid_t kNobody = 65534;

void touch(const std::string& path) { std::ofstream(path) << ""; }

// A fake cgroup directory: the directory and the files delegation is about.
class FakeGroup : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/corral-delegation-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    group_ = root_ + "/g";
    ASSERT_EQ(mkdir(group_.c_str(), 0755), 0);
    touch(group_ + "/cgroup.procs");
    chmod((group_ + "/cgroup.procs").c_str(), 0644);
    std::ofstream(group_ + "/cgroup.controllers") << "memory pids\n";
    // Not root: the files are ours, and another uid stands for root's.
    owner_ = geteuid() == 0 ? kNobody : geteuid();
    other_ = owner_ + 1;
  }
  void TearDown() override {
    unlink((group_ + "/cgroup.procs").c_str());
    unlink((group_ + "/cgroup.controllers").c_str());
    rmdir(group_.c_str());
    rmdir(root_.c_str());
  }
  // As Delegate= does: the directory and its cgroup.procs to uid.
  void delegate(bool procs_too) {
    if (geteuid() != 0) return;  // already ours
    ASSERT_EQ(chown(group_.c_str(), owner_, owner_), 0);
    if (procs_too) {
      ASSERT_EQ(chown((group_ + "/cgroup.procs").c_str(), owner_, owner_), 0);
    }
  }

  std::string root_, group_;
  uid_t owner_ = 0, other_ = 0;
};

TEST_F(FakeGroup, WritableByTheUidItIsDelegatedTo) {
  delegate(true);
  EXPECT_TRUE(writable_by(group_, owner_, owner_, {}));
  EXPECT_FALSE(writable_by(group_, other_, other_, {}));
}

TEST_F(FakeGroup, NotWritableWhenOnlyTheDirectoryIsDelegated) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the directory and its file two owners";
  delegate(false);
  // mkdir would work, moving a process in would not.
  EXPECT_FALSE(writable_by(group_, owner_, owner_, {}));
}

TEST_F(FakeGroup, GroupWritableCountsForMembersOnly) {
  delegate(true);
  gid_t gid = 4242;
  if (geteuid() == 0) {
    ASSERT_EQ(chown(group_.c_str(), 0, gid), 0);
    ASSERT_EQ(chown((group_ + "/cgroup.procs").c_str(), 0, gid), 0);
  } else {
    gid = getegid();
  }
  ASSERT_EQ(chmod(group_.c_str(), 0775), 0);
  ASSERT_EQ(chmod((group_ + "/cgroup.procs").c_str(), 0664), 0);
  uid_t stranger = geteuid() == 0 ? other_ : owner_ + 1;
  EXPECT_TRUE(writable_by(group_, stranger, 1, {gid}));
  EXPECT_FALSE(writable_by(group_, stranger, 1, {}));
}

TEST_F(FakeGroup, MissingDirectoryIsNotWritable) {
  EXPECT_FALSE(writable_by(root_ + "/none", owner_, owner_, {}));
  EXPECT_FALSE(writable_by(root_ + "/none", 0, 0, {}));
}

TEST_F(FakeGroup, DescribeAndTerm) {
  delegate(true);
  Hierarchies h;
  h.v2.mount = root_;
  h.v2.own = group_;
  // No cgroup.procs there: nobody may move a process into it.
  h.v1.push_back({{"memory"}, "/sys/fs/cgroup/memory", root_});
  Info info;
  describe(h, owner_, owner_, {}, info);
  EXPECT_TRUE(info.has_v2);
  EXPECT_TRUE(info.v2.writable);
  EXPECT_EQ(info.v2.controllers, (std::vector<std::string>{"memory", "pids"}));
  ASSERT_EQ(info.v1.size(), 1u);
  EXPECT_FALSE(info.v1[0].writable);
  info.base = -EACCES;
  info.base_why = "cannot create \"x\"\n";
  std::string term = to_term(info);
  EXPECT_NE(term.find("uid => " + std::to_string(owner_) + ","), std::string::npos) << term;
  EXPECT_NE(term.find("group => <<\"" + group_ + "\">>"), std::string::npos) << term;
  EXPECT_NE(term.find("controllers => ['memory', 'pids'], writable => true"), std::string::npos)
      << term;
  // v2 wins where both have a controller, as in make_plan.
  EXPECT_NE(term.find("controllers => #{'memory' => v2, 'pids' => v2}"), std::string::npos) << term;
  EXPECT_NE(term.find("base => {error, <<\"cannot create \\\"x\\\"\\012\">>}"), std::string::npos)
      << term;
  EXPECT_EQ(term.substr(term.size() - 3), "}.\n");
}

TEST(Describe, NoV2) {
  Hierarchies h;
  Info info;
  describe(h, 1000, 1000, {}, info);
  std::string term = to_term(info);
  EXPECT_NE(term.find("v2 => none"), std::string::npos) << term;
  EXPECT_NE(term.find("controllers => #{}"), std::string::npos) << term;
}

TEST(DeniedFix, NamesTheGroupAndTheUid) {
  if (geteuid() != 0) {
    EXPECT_EQ(denied_fix("/g", -EACCES), "; delegate /g to uid " + std::to_string(geteuid()) +
                                             " (systemd Delegate=yes) or run as root");
    return;
  }
  EXPECT_EQ(denied_fix("/g", -EACCES), "");  // root's refusals come from elsewhere
  std::string out =
      as_nobody([] { return denied_fix("/g", EPERM) + "|" + denied_fix("/g", -ENOENT); });
  EXPECT_EQ(out, "; delegate /g to uid 65534 (systemd Delegate=yes) or run as root|");
}

// make_base for real, as nobody, in a group beneath ours.
class BaseAsNobody : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to make a group and become nobody";
    std::string own;
    if (int rc = own_v2_dir(own); rc < 0) GTEST_SKIP() << "no cgroup v2 tree: " << strerror(-rc);
    dir_ = own + "/delegation-gtest." + std::to_string(getpid());
    if (mkdir(dir_.c_str(), 0755) < 0)
      GTEST_SKIP() << "cannot write the cgroup v2 tree at " << own << ": " << strerror(errno);
  }
  void TearDown() override {
    if (!dir_.empty()) (void)destroy(dir_, std::chrono::seconds(1));
  }
  // In a child: moves into dir_ as root, then as nobody makes a base there.
  std::string make_base_in_dir() {
    std::string procs = dir_ + "/cgroup.procs";
    return as_nobody(
        [] {
          Dir base;
          std::string why;
          int rc = make_base(getpid(), base, why);
          return rc == 0 ? "ok " + base.path() : "error " + why;
        },
        [&] {
          int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
          bool ok = fd >= 0 && write(fd, "0", 1) == 1;
          if (fd >= 0) close(fd);
          return ok;
        });
  }
  std::string dir_;
};

TEST_F(BaseAsNobody, DelegatedGroupGetsABase) {
  for (const char* f : {"", "/cgroup.procs", "/cgroup.threads", "/cgroup.subtree_control"})
    ASSERT_EQ(chown((dir_ + f).c_str(), kNobody, kNobody), 0) << f;
  std::string out = make_base_in_dir();
  EXPECT_EQ(out.rfind("ok " + dir_ + "/corral.", 0), 0u) << out;
  // The base was removed again by its Dir; the child left the group.
  std::vector<std::string> subs;
  ASSERT_EQ(subdirs(dir_, subs), 0);
  EXPECT_TRUE(subs.empty());
}

TEST_F(BaseAsNobody, UndelegatedGroupNamesTheFix) {
  std::string out = make_base_in_dir();
  EXPECT_EQ(out.rfind("error cannot create " + dir_ + "/corral.", 0), 0u) << out;
  EXPECT_NE(out.find("Permission denied; delegate " + dir_ +
                     " to uid 65534 (systemd Delegate=yes) or run as root"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace corral::spawner::cgroup
