// Tests for the configured-cgroup backend: parsing v1 hierarchies, the v1
// translation, where each controller goes, and the v2 path of Placer::place
// against a fake cgroup tree in a temporary directory (CI's v2 tree has no
// controllers, so the real v2 path cannot run there). The v1 path runs for
// real in test/corral_cgroup_tests.erl and test/corral_cgroup_test.exs.
#include "cgroup_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "sysfs.h"

namespace corral::spawner::cgroup {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHybridMountinfo =
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
constexpr const char* kHybridCgroup =
    "9:name=systemd:/\n"
    "8:pids:/\n"
    "4:memory:/process_api/44eb\n"
    "3:cpuset:/\n"
    "2:cpuacct:/\n"
    "1:cpu:/\n"
    "0::/\n";

TEST(CgroupV1Parse, FindsEachControllerHierarchyAndOurGroupInIt) {
  std::vector<Hierarchy> v1;
  parse_v1(kHybridMountinfo, kHybridCgroup, v1);
  // name=systemd carries no controller.
  ASSERT_EQ(5u, v1.size());
  EXPECT_EQ(std::vector<std::string>{"cpu"}, v1[0].controllers);
  EXPECT_EQ("/sys/fs/cgroup/cpu", v1[0].own);
  EXPECT_EQ(std::vector<std::string>{"memory"}, v1[3].controllers);
  EXPECT_EQ("/sys/fs/cgroup/memory/process_api/44eb", v1[3].own);
  EXPECT_EQ("/sys/fs/cgroup/memory", v1[3].mount);
  EXPECT_EQ("/sys/fs/cgroup/pids", v1[4].own);
  for (const Hierarchy& h : v1)
    for (const std::string& c : h.controllers) EXPECT_NE("name=systemd", c);
}

TEST(CgroupV1Parse, NoV1HierarchiesOnAPureV2Host) {
  std::vector<Hierarchy> v1;
  parse_v1("26 25 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/user.slice\n", v1);
  EXPECT_TRUE(v1.empty());
}

TEST(CgroupV1Translate, EachV2SettingBecomesItsV1File) {
  std::vector<Write> out;
  std::string why;
  ASSERT_EQ(0, to_v1({{"memory.max", "67108864"},
                      {"memory.swap.max", "1048576"},
                      {"memory.low", "max"},
                      {"cpu.max", "10000 100000"},
                      {"cpu.weight", "100"},
                      {"pids.max", "50"},
                      {"cpuset.cpus", "0"},
                      {"memory.limit_in_bytes", "5"}},
                     out, why))
      << why;
  std::vector<Write> want = {{"memory.limit_in_bytes", "67108864"},
                             {"memory.soft_limit_in_bytes", "-1"},
                             {"cpu.cfs_period_us", "100000"},
                             {"cpu.cfs_quota_us", "10000"},
                             {"cpu.shares", "1024"},
                             {"pids.max", "50"},
                             {"cpuset.cpus", "0"},
                             {"memory.limit_in_bytes", "5"},
                             // memsw is memory + swap, and comes last: the
                             // memory limit in effect then, the raw 5
                             {"memory.memsw.limit_in_bytes", "1048581"}};
  EXPECT_EQ(want, out);
  ASSERT_EQ(0, to_v1({{"memory.max", "64M"}, {"memory.swap.max", "1M"}}, out, why)) << why;
  EXPECT_EQ((std::vector<Write>{{"memory.limit_in_bytes", "67108864"},
                                {"memory.memsw.limit_in_bytes", "68157440"}}),
            out);
  ASSERT_EQ(0, to_v1({{"cpu.max", "max"}, {"cpu.weight", "1"}}, out, why));
  EXPECT_EQ((std::vector<Write>{{"cpu.cfs_quota_us", "-1"}, {"cpu.shares", "10"}}), out);
}

TEST(CgroupV1Translate, SettingsWithoutAV1EquivalentAreErrorsNamingThem) {
  std::vector<Write> out;
  for (const char* f : {"memory.high", "memory.min", "memory.oom.group"}) {
    std::string why;
    EXPECT_EQ(-EOPNOTSUPP, to_v1({{f, "1"}}, out, why)) << f;
    EXPECT_NE(std::string::npos, why.find(f)) << why;
  }
  std::string why;
  // cpu.idle is a v1 file too (Linux 5.15): written as it is.
  ASSERT_EQ(0, to_v1({{"cpu.idle", "1"}}, out, why)) << why;
  EXPECT_EQ((std::vector<Write>{{"cpu.idle", "1"}}), out);
  EXPECT_EQ(-EINVAL, to_v1({{"memory.swap.max", "5"}}, out, why));
  EXPECT_NE(std::string::npos, why.find("memory.max")) << why;
  EXPECT_EQ(-EINVAL, to_v1({{"memory.max", "max"}, {"memory.swap.max", "5"}}, out, why));
  EXPECT_EQ(-EINVAL, to_v1({{"cpu.max", "ten"}}, out, why));
  EXPECT_NE(std::string::npos, why.find("cpu.max")) << why;
  // io.weight needs a weight file in the leaf.
  EXPECT_EQ(-EOPNOTSUPP, to_v1({{"io.weight", "100"}}, out, why));
  auto has_bfq = [](const std::string& f, const void*) { return f == "blkio.bfq.weight"; };
  ASSERT_EQ(0, to_v1({{"io.weight", "default 5000"}}, out, why, has_bfq));
  EXPECT_EQ((std::vector<Write>{{"blkio.bfq.weight", "1000"}}), out);
}

Hierarchies hybrid() {
  Hierarchies h;
  h.v2 = {{}, "/u", "/u/vm"};
  h.v1 = {{{"memory"}, "/m", "/m/vm"}, {{"pids"}, "/p", "/p"}, {{"cpu", "cpuacct"}, "/c", "/c"}};
  return h;
}

TEST(CgroupPlan, ControllersGoToV2WhenOfferedElseToTheirV1Hierarchy) {
  CgroupSpec spec;
  spec.settings = {{"memory.max", "1"}, {"pids.max", "2"}, {"cpu.weight", "3"}};
  spec.controllers = {"cpuacct"};
  Plan plan;
  std::string why;
  ASSERT_EQ(0, make_plan(spec, {"memory"}, hybrid(), plan, why)) << why;
  EXPECT_EQ(std::vector<std::string>{"memory"}, plan.v2_controllers);
  EXPECT_EQ((std::vector<Write>{{"memory.max", "1"}}), plan.v2);
  ASSERT_EQ(2u, plan.v1.size());
  // cpuacct (a v1 name) and cpu share the third hierarchy: one leaf there.
  EXPECT_EQ(2u, plan.v1[0].hierarchy);
  EXPECT_EQ((std::vector<Write>{{"cpu.weight", "3"}}), plan.v1[0].writes);
  EXPECT_EQ(1u, plan.v1[1].hierarchy);
  EXPECT_EQ((std::vector<Write>{{"pids.max", "2"}}), plan.v1[1].writes);
}

TEST(CgroupPlan, AControllerNoHierarchyOffersIsAnErrorNamingItAndTheFix) {
  CgroupSpec spec;
  spec.settings = {{"hugetlb.2MB.max", "1"}};
  Plan plan;
  std::string why;
  EXPECT_EQ(-EOPNOTSUPP, make_plan(spec, {}, hybrid(), plan, why));
  EXPECT_NE(std::string::npos, why.find("hugetlb")) << why;
  EXPECT_NE(std::string::npos, why.find("enable +hugetlb in /u/cgroup.subtree_control")) << why;
  spec.settings = {{"cgroup.procs", "1"}};
  EXPECT_EQ(-EINVAL, make_plan(spec, {}, hybrid(), plan, why));
  EXPECT_NE(std::string::npos, why.find("cgroup.procs")) << why;
}

// --- Placer::place on a fake v2 tree ------------------------------------------

std::string slurp(const std::string& path) {
  std::string s;
  EXPECT_EQ(0, read_file(path, s)) << path;
  return s;
}

void put(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

class FakeTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/corral_fake_cgXXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    root_ = tmpl;
    own_ = root_ + "/vm";
    base_ = own_ + "/corral.1";
    fs::create_directories(base_);
    put(own_ + "/cgroup.controllers", "cpu memory pids\n");
    put(own_ + "/cgroup.subtree_control", "memory pids\n");
    kernel(base_);
    put(base_ + "/cgroup.controllers", "memory pids\n");  // what own delegates
    Hierarchies h;
    h.v2 = {{}, root_, own_};
    placer_.init(getpid(), h, base_);
    placer_.made = [this](const std::string& dir) { kernel(dir); };
  }
  void TearDown() override { fs::remove_all(root_); }

  // What the kernel gives a new v2 group: the controllers its parent
  // enables, and their files. (A fake file cannot merge "+c" writes, so the
  // parent's offered controllers count as enabled too.)
  void kernel(const std::string& dir) {
    std::string parent = dir.substr(0, dir.rfind('/'));
    std::string enabled;
    for (const char* f : {"/cgroup.subtree_control", "/cgroup.controllers"}) {
      std::string text;
      if (read_file(parent + f, text) < 0) continue;
      for (std::string w : words(text)) enabled += (w[0] == '+' ? w.substr(1) : w) + " ";
    }
    put(dir + "/cgroup.controllers", enabled);
    put(dir + "/cgroup.subtree_control", "");
    put(dir + "/cgroup.procs", "");
    for (const std::string& c : words(enabled))
      for (const char* f : {".max", ".weight", ".swap.max", ".high"}) put(dir + "/" + c + f, "");
  }

  std::string root_, own_, base_;
  Placer placer_;
};

TEST_F(FakeTree, V2SettingsGoIntoAFreshLeafUnderOurBaseWithControllersEnabled) {
  CgroupSpec spec;
  spec.settings = {{"memory.max", "67108864"}};
  Placement p;
  std::string why;
  ASSERT_EQ(0, placer_.place(spec, p, why)) << why;
  ASSERT_TRUE(p.v2);
  EXPECT_EQ(base_ + "/x", p.v2.path().substr(0, base_.size() + 2));
  EXPECT_EQ("67108864", slurp(p.v2.path() + "/memory.max"));
  // Our base's subtree_control enables the controller the leaf needs.
  EXPECT_EQ("+memory", slurp(base_ + "/cgroup.subtree_control"));
  EXPECT_TRUE(p.v1.empty());
  put(base_ + "/cgroup.subtree_control", "memory\n");
  spec.settings = {{"memory.max", "1"}, {"pids.max", "50"}};
  // Each child its own leaf.
  Placement q;
  ASSERT_EQ(0, placer_.place(spec, q, why)) << why;
  EXPECT_NE(p.v2.path(), q.v2.path());
  EXPECT_EQ("+pids", slurp(base_ + "/cgroup.subtree_control").substr(0, 5));
  EXPECT_EQ("50", slurp(q.v2.path() + "/pids.max"));
}

TEST_F(FakeTree, AControllerOurGroupOffersButDoesNotDelegateNamesTheFix) {
  CgroupSpec spec;
  spec.settings = {{"cpu.weight", "10"}};  // in own's controllers, not its subtree_control
  Placement p;
  std::string why;
  EXPECT_EQ(-EOPNOTSUPP, placer_.place(spec, p, why));
  EXPECT_NE(std::string::npos, why.find("enable +cpu in " + own_ + "/cgroup.subtree_control"))
      << why;
  EXPECT_FALSE(p.v2);
}

TEST_F(FakeTree, ABaseWeDidNotMakeIsOnlyReadAndMustEnableTheController) {
  fs::create_directories(own_ + "/mine");
  put(own_ + "/mine/cgroup.subtree_control", "pids\n");
  CgroupSpec spec;
  spec.base = "mine";
  spec.settings = {{"memory.max", "1"}};
  Placement p;
  std::string why;
  EXPECT_EQ(-EOPNOTSUPP, placer_.place(spec, p, why));
  EXPECT_NE(std::string::npos,
            why.find("enable +memory in " + own_ + "/mine/cgroup.subtree_control"))
      << why;
  EXPECT_EQ("pids\n", slurp(own_ + "/mine/cgroup.subtree_control"));  // untouched
  spec.settings = {{"pids.max", "7"}};
  ASSERT_EQ(0, placer_.place(spec, p, why)) << why;
  // The leaf is named after the spawner, so that a later one can sweep it.
  EXPECT_EQ(own_ + "/mine/corral." + std::to_string(getpid()) + ".",
            p.v2.path().substr(0, p.v2.path().rfind('.') + 1));
  EXPECT_EQ("7", slurp(p.v2.path() + "/pids.max"));
  spec.base = "/vm/missing";  // absolute: from the hierarchy's root
  EXPECT_EQ(-ENOENT, placer_.place(spec, p, why));
  EXPECT_NE(std::string::npos, why.find("cgroup_base " + own_ + "/missing does not exist")) << why;
}

// A base may be the VM's own group, where our own v2 base lies: the sweep
// of dead spawners' leaves there must keep ours.
TEST_F(FakeTree, ASweepOfACustomBaseKeepsOurOwnBase) {
  std::string ours = own_ + "/corral." + std::to_string(getpid());
  fs::create_directories(ours);
  CgroupSpec spec;
  spec.base = ".";
  Placement p;
  std::string why;
  ASSERT_EQ(0, placer_.place(spec, p, why)) << why;
  EXPECT_TRUE(fs::exists(ours));
}

TEST_F(FakeTree, CgroupPathIsMadeForTheChildAndMustNotExist) {
  CgroupSpec spec;
  spec.path = "job1";
  spec.controllers = {"pids"};
  put(own_ + "/cgroup.subtree_control", "memory pids\n");
  Placement p;
  std::string why;
  ASSERT_EQ(0, placer_.place(spec, p, why)) << why;
  EXPECT_EQ(own_ + "/job1", p.v2.path());
  Placement q;
  EXPECT_EQ(-EEXIST, placer_.place(spec, q, why));
  EXPECT_NE(std::string::npos, why.find("cgroup_path " + own_ + "/job1 already exists")) << why;
}

TEST(CgroupOom, CountsFromV2EventsOrV1OomControl) {
  char tmpl[] = "/tmp/corral_fake_oomXXXXXX";
  ASSERT_NE(nullptr, mkdtemp(tmpl));
  std::string d = tmpl;
  EXPECT_EQ(0, oom_kills(d));
  put(d + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  EXPECT_EQ(2, oom_kills(d));
  put(d + "/memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n");
  EXPECT_EQ(1, oom_kills(d));
  fs::remove_all(d);
}

}  // namespace
}  // namespace corral::spawner::cgroup
