// Tests for the identity and limit options: their decoding, the resolution
// of names before the clone, and what the child is once it has exec'd (read
// from /proc/<pid>/status and /proc/<pid>/limits while it runs). The tests
// that change identities need root and are skipped with a reason without it.
#include <ei.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "child.h"
#include "options.h"
#include "request_terms.h"
#include "spawn_support.h"

namespace corral::spawner {
namespace {

// --- request terms ------------------------------------------------------------

using namespace terms;
using harness::as_nobody;

// The request map with path, argv and env added to `extra`.
std::string map_term(Entries extra) {
  Entries entries = {{"path", bin("/bin/true")}, {"argv", list({bin("true")})}, {"env", list({})}};
  entries.insert(entries.end(), extra.begin(), extra.end());
  return terms::map_term(entries);
}

SpawnSpec decoded(Entries extra) {
  SpawnSpec spec;
  std::string err;
  EXPECT_TRUE(decode_spawn_spec(map_term(std::move(extra)), spec, err)) << err;
  return spec;
}

std::string decode_error(Entries extra) {
  SpawnSpec spec;
  std::string err;
  EXPECT_FALSE(decode_spawn_spec(map_term(std::move(extra)), spec, err));
  return err;
}

TEST(IdentityDecode, AbsentMeansNothingChanges) {
  SpawnSpec s = decoded({});
  EXPECT_FALSE(s.identity.any());
  EXPECT_FALSE(decoded({{"no_new_privs", atom("false")}}).identity.any());
}

TEST(IdentityDecode, EveryKey) {
  SpawnSpec s = decoded({
      {"uid", bin("nobody")},
      {"gid", lng(65534)},
      {"groups", list({bin("adm"), lng(4294967294L)})},
      {"rlimits", list({tuple({atom("nofile"), lng(100), lng(200)}),
                        tuple({atom("core"), lng(0), atom("infinity")}),
                        tuple({atom("as"), atom("infinity"), atom("infinity")})})},
      {"nice", lng(-20)},
      {"umask", lng(0777)},
      {"no_new_privs", atom("true")},
  });
  const IdentitySpec& id = s.identity;
  ASSERT_TRUE(id.any());
  ASSERT_TRUE(id.uid);
  EXPECT_EQ(id.uid->name, "nobody");
  ASSERT_TRUE(id.gid);
  EXPECT_TRUE(id.gid->name.empty());
  EXPECT_EQ(id.gid->id, 65534u);
  ASSERT_TRUE(id.groups);
  ASSERT_EQ(id.groups->size(), 2u);
  EXPECT_EQ((*id.groups)[0].name, "adm");
  EXPECT_EQ((*id.groups)[1].id, 4294967294u);
  ASSERT_EQ(id.rlimits.size(), 3u);
  EXPECT_EQ(id.rlimits[0].resource, RLIMIT_NOFILE);
  EXPECT_EQ(id.rlimits[0].soft, 100u);
  EXPECT_EQ(id.rlimits[0].hard, 200u);
  EXPECT_EQ(id.rlimits[1].resource, RLIMIT_CORE);
  EXPECT_EQ(id.rlimits[1].hard, RLIM_INFINITY);
  EXPECT_EQ(id.rlimits[2].resource, RLIMIT_AS);
  EXPECT_EQ(id.rlimits[2].soft, RLIM_INFINITY);
  EXPECT_EQ(id.nice, -20);
  EXPECT_EQ(id.umask, 0777u);
  EXPECT_TRUE(id.no_new_privs);
  // Small gids only: term_to_binary makes a STRING_EXT of [0, 4, 255].
  SpawnSpec b =
      decoded({{"groups", [](ei_x_buff* x) { ei_x_encode_string_len(x, "\x00\x04\xff", 3); }}});
  ASSERT_TRUE(b.identity.groups);
  ASSERT_EQ(b.identity.groups->size(), 3u);
  EXPECT_EQ((*b.identity.groups)[0].id, 0u);
  EXPECT_EQ((*b.identity.groups)[1].id, 4u);
  EXPECT_EQ((*b.identity.groups)[2].id, 255u);
  EXPECT_TRUE((*b.identity.groups)[2].name.empty());
  // An empty groups list is a list: setgroups([]).
  SpawnSpec e = decoded({{"groups", list({})}});
  ASSERT_TRUE(e.identity.groups);
  EXPECT_TRUE(e.identity.groups->empty());
}

TEST(IdentityDecode, ResourceNames) {
  EXPECT_EQ(rlimit_resource("as"), RLIMIT_AS);
  EXPECT_EQ(rlimit_resource("nproc"), RLIMIT_NPROC);
  EXPECT_EQ(rlimit_resource("cpu"), RLIMIT_CPU);
  EXPECT_EQ(rlimit_resource("fsize"), RLIMIT_FSIZE);
  EXPECT_EQ(rlimit_resource("stack"), RLIMIT_STACK);
  EXPECT_EQ(rlimit_resource("rttime"), RLIMIT_RTTIME);
  EXPECT_EQ(rlimit_resource("NOFILE"), -1);
  EXPECT_EQ(rlimit_resource("vmem"), -1);
}

TEST(IdentityDecode, RejectsBadValuesNamingTheKey) {
  auto rl = [](const Enc& soft, const Enc& hard, const std::string& name = "nofile") {
    return Entries{{"rlimits", list({tuple({atom(name), soft, hard})})}};
  };
  struct Case {
    Entries entries;
    std::string expect;
  } const cases[] = {
      {{{"uid", lng(-1)}}, "uid: -1 out of range"},
      {{{"uid", lng(4294967295L)}}, "uid: 4294967295 out of range"},
      {{{"uid", bin("")}}, "uid: empty name"},
      {{{"uid", bin(std::string("a\0b", 3))}}, "uid: empty name, or a NUL byte"},
      {{{"uid", atom("root")}}, "uid: not an integer"},
      {{{"gid", list({})}}, "gid: not an integer"},
      {{{"groups", bin("adm")}}, "groups: not a list"},
      {{{"groups", list({lng(1), lng(-2)})}}, "groups: element 2: -2 out of range"},
      {{{"rlimits", lng(1)}}, "rlimits: not a list"},
      {{{"rlimits", list({tuple({atom("nofile"), lng(1)})})}}, "element 1 is not {Resource"},
      {{{"rlimits", list({lng(1)})}}, "element 1 is not {Resource"},
      {rl(lng(1), lng(1), "vmem"), "element 1 names no resource"},
      {rl(lng(-1), lng(1)), "neither a non-negative integer nor infinity"},
      {rl(lng(1), atom("unlimited")), "neither a non-negative integer nor infinity"},
      {rl(lng(2), lng(1)), "soft limit above its hard limit"},
      {rl(atom("infinity"), lng(1)), "soft limit above its hard limit"},
      {{{"rlimits",
         list({tuple({atom("core"), lng(0), lng(0)}), tuple({atom("core"), lng(1), lng(1)})})}},
       "element 2 repeats core"},
      {{{"nice", lng(20)}}, "nice: 20 out of range -20..19"},
      {{{"nice", lng(-21)}}, "nice: -21 out of range"},
      {{{"umask", lng(01000)}}, "umask: 512 out of range 0..511"},
      {{{"no_new_privs", lng(1)}}, "no_new_privs: not a boolean"},
      {{{"uid", lng(1)}, {"uid", lng(2)}}, "uid: duplicate key"},
      {{{"rlimits", list({})}, {"rlimits", list({})}}, "rlimits: duplicate key"},
  };
  for (const Case& c : cases) {
    std::string err = decode_error(c.entries);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "got: " << err << "\nwant: " << c.expect;
  }
}

// --- resolution -------------------------------------------------------------

std::vector<gid_t> user_groups(const char* user, gid_t gid) {
  int n = 64;
  std::vector<gid_t> v(static_cast<size_t>(n));
  EXPECT_GE(getgrouplist(user, gid, v.data(), &n), 0);
  v.resize(static_cast<size_t>(n));
  return v;
}

std::vector<gid_t> our_groups() {
  std::vector<gid_t> v(static_cast<size_t>(getgroups(0, nullptr)));
  v.resize(static_cast<size_t>(getgroups(static_cast<int>(v.size()), v.data())));
  std::sort(v.begin(), v.end());
  return v;
}

IdRef named(const char* name) {
  IdRef r;
  r.name = name;
  return r;
}
IdRef numbered(uint32_t id) {
  IdRef r;
  r.id = id;
  return r;
}

// A uid with no passwd entry.
uid_t unused_uid() {
  for (uid_t u = 4000000; u < 4000100; u++)
    if (!getpwuid(u)) return u;
  return 4000000;
}

TEST(IdentityResolve, UserNameBringsItsGroupAndGroups) {
  passwd* pw = getpwnam("nobody");
  if (!pw) GTEST_SKIP() << "no user nobody on this system";
  IdentitySpec id;
  id.uid = named("nobody");
  Credentials c;
  const char* stage = "";
  ASSERT_EQ(resolve_credentials(id, c, stage), 0) << stage;
  EXPECT_TRUE(c.set_uid);
  EXPECT_EQ(c.uid, pw->pw_uid);
  EXPECT_TRUE(c.set_gid);
  EXPECT_EQ(c.gid, pw->pw_gid);
  EXPECT_EQ(c.groups, user_groups("nobody", pw->pw_gid));
  // A number finds the same user.
  id.uid = numbered(pw->pw_uid);
  Credentials n;
  ASSERT_EQ(resolve_credentials(id, n, stage), 0) << stage;
  EXPECT_EQ(n.uid, c.uid);
  EXPECT_EQ(n.gid, c.gid);
  EXPECT_EQ(n.groups, c.groups);
}

TEST(IdentityResolve, ExplicitGidAndGroupsWin) {
  IdentitySpec id;
  id.uid = named("root");
  id.gid = named("adm");
  id.groups = std::vector<IdRef>{numbered(7), named("root")};
  if (!getgrnam("adm")) GTEST_SKIP() << "no group adm on this system";
  Credentials c;
  const char* stage = "";
  ASSERT_EQ(resolve_credentials(id, c, stage), 0) << stage;
  EXPECT_EQ(c.uid, 0u);
  EXPECT_EQ(c.gid, getgrnam("adm")->gr_gid);
  EXPECT_EQ(c.groups, (std::vector<gid_t>{7, 0}));
  EXPECT_EQ(c.set_groups, our_groups() != (std::vector<gid_t>{0, 7}));
}

TEST(IdentityResolve, GidAloneLeavesTheGroupsAlone) {
  IdentitySpec id;
  id.gid = numbered(12345);
  Credentials c;
  const char* stage = "";
  ASSERT_EQ(resolve_credentials(id, c, stage), 0);
  EXPECT_FALSE(c.set_uid);
  EXPECT_TRUE(c.set_gid);
  EXPECT_EQ(c.gid, 12345u);
  EXPECT_FALSE(c.set_groups);
}

TEST(IdentityResolve, OurOwnGroupsAreNotSetAgain) {
  std::vector<gid_t> ours = our_groups();
  IdentitySpec id;
  id.groups.emplace();
  for (auto it = ours.rbegin(); it != ours.rend(); ++it) id.groups->push_back(numbered(*it));
  Credentials c;
  const char* stage = "";
  ASSERT_EQ(resolve_credentials(id, c, stage), 0);
  EXPECT_FALSE(c.set_groups) << "setgroups would need CAP_SETGID for nothing";
  id.groups->push_back(numbered(4123456));
  ASSERT_EQ(resolve_credentials(id, c, stage), 0);
  EXPECT_TRUE(c.set_groups);
}

TEST(IdentityResolve, UnknownNamesAreEnoentAtTheirOption) {
  Credentials c;
  const char* stage = "";
  IdentitySpec u;
  u.uid = named("corral-no-such-user");
  EXPECT_EQ(resolve_credentials(u, c, stage), -ENOENT);
  EXPECT_STREQ(stage, "uid");
  IdentitySpec g;
  g.gid = named("corral-no-such-group");
  EXPECT_EQ(resolve_credentials(g, c, stage), -ENOENT);
  EXPECT_STREQ(stage, "gid");
  IdentitySpec gs;
  gs.groups = std::vector<IdRef>{numbered(1), named("corral-no-such-group")};
  EXPECT_EQ(resolve_credentials(gs, c, stage), -ENOENT);
  EXPECT_STREQ(stage, "groups");
}

TEST(IdentityResolve, UidWithoutAUserNeedsAGid) {
  IdentitySpec id;
  id.uid = numbered(unused_uid());
  Credentials c;
  const char* stage = "";
  EXPECT_EQ(resolve_credentials(id, c, stage), -ENOENT);
  EXPECT_STREQ(stage, "gid");
  id.gid = numbered(4000000);
  ASSERT_EQ(resolve_credentials(id, c, stage), 0);
  EXPECT_EQ(c.uid, id.uid->id);
  EXPECT_EQ(c.gid, 4000000u);
  EXPECT_TRUE(c.groups.empty()) << "no user, no supplementary groups";
  EXPECT_EQ(c.set_groups, !our_groups().empty());
}

// --- the child ----------------------------------------------------------------

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The value of "Key:" in /proc/<pid>/status, tabs made spaces.
std::string status_field(pid_t pid, const std::string& key) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      std::replace(v.begin(), v.end(), '\t', ' ');
      v.erase(0, v.find_first_not_of(' '));
      v.erase(v.find_last_not_of(' ') + 1);
      return v;
    }
  }
  return "<no " + key + ">";
}

// "soft hard" of a row of /proc/<pid>/limits ("Max open files").
std::string limits_row(pid_t pid, const std::string& row) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/limits"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(row, 0) == 0) {
      std::istringstream fields(line.substr(row.size()));
      std::string soft, hard;
      fields >> soft >> hard;
      return soft + " " + hard;
    }
  }
  return "<no " + row + ">";
}

// A child that waits for its stdin to end: read /proc while it runs, then
// end() it.
struct Waiting {
  SpawnResult r;
  explicit Waiting(IdentitySpec id, const ChildContext& ctx = {}) {
    SpawnSpec s;
    s.path = "/bin/cat";
    s.argv = {"cat"};
    s.out = StdoutMode::Null;
    s.identity = std::move(id);
    r = spawn_child(s, ctx);
  }
  pid_t pid() const { return r.child.pid; }
  int end() {
    r.child.in.reset();
    int st = 0;
    while (waitpid(r.child.pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
  }
};

#define NEEDS_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root to change a child's uid, gid and groups"

TEST(IdentityChild, RunsAsAnotherUserWithItsGroups) {
  NEEDS_ROOT();
  passwd* pw = getpwnam("nobody");
  if (!pw) GTEST_SKIP() << "no user nobody on this system";
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  IdentitySpec id;
  id.uid = named("nobody");
  id.groups = std::vector<IdRef>{numbered(4), numbered(gid), numbered(4000001)};
  Waiting w(id);
  ASSERT_TRUE(w.r.ok) << w.r.stage << ": " << strerror(w.r.error);
  std::string u = std::to_string(uid), g = std::to_string(gid);
  EXPECT_EQ(status_field(w.pid(), "Uid"), u + " " + u + " " + u + " " + u);
  EXPECT_EQ(status_field(w.pid(), "Gid"), g + " " + g + " " + g + " " + g);
  EXPECT_EQ(status_field(w.pid(), "Groups"), "4 " + g + " 4000001");
  EXPECT_EQ(w.end(), 0);
}

TEST(IdentityChild, ANumericUidGetsItsUsersGroupsNotOurs) {
  NEEDS_ROOT();
  passwd* pw = getpwnam("nobody");
  if (!pw) GTEST_SKIP() << "no user nobody on this system";
  std::vector<gid_t> expect = user_groups("nobody", pw->pw_gid);
  IdentitySpec id;
  id.uid = numbered(pw->pw_uid);
  Waiting w(id);
  ASSERT_TRUE(w.r.ok) << w.r.stage << ": " << strerror(w.r.error);
  std::string want;
  for (gid_t g : expect) want += (want.empty() ? "" : " ") + std::to_string(g);
  EXPECT_EQ(status_field(w.pid(), "Groups"), want) << "root's groups must not be kept";
  EXPECT_EQ(status_field(w.pid(), "Gid").substr(0, std::to_string(pw->pw_gid).size() + 1),
            std::to_string(pw->pw_gid) + " ");
  EXPECT_EQ(w.end(), 0);
}

TEST(IdentityChild, RlimitsNiceUmaskAndNoNewPrivs) {
  IdentitySpec id;
  id.rlimits = {{RLIMIT_NOFILE, 100, 200}, {RLIMIT_CORE, 0, 0}, {RLIMIT_FSIZE, 1 << 20, 1 << 21}};
  id.nice = 7;
  id.umask = 027;
  id.no_new_privs = true;
  Waiting w(id);
  ASSERT_TRUE(w.r.ok) << w.r.stage << ": " << strerror(w.r.error);
  EXPECT_EQ(limits_row(w.pid(), "Max open files"), "100 200");
  EXPECT_EQ(limits_row(w.pid(), "Max core file size"), "0 0");
  EXPECT_EQ(limits_row(w.pid(), "Max file size"), "1048576 2097152");
  EXPECT_EQ(status_field(w.pid(), "Umask"), "0027");
  EXPECT_EQ(status_field(w.pid(), "NoNewPrivs"), "1");
  // Field 19 of /proc/<pid>/stat is the nice value (after the ")" of comm).
  std::string stat = slurp("/proc/" + std::to_string(w.pid()) + "/stat");
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string f;
  for (int i = 3; i <= 19; i++) rest >> f;
  EXPECT_EQ(f, "7");
  EXPECT_EQ(w.end(), 0);
}

TEST(IdentityChild, WithoutOptionsNothingChanges) {
  Waiting w(IdentitySpec{});
  ASSERT_TRUE(w.r.ok);
  EXPECT_EQ(status_field(w.pid(), "NoNewPrivs"), "0");
  EXPECT_EQ(status_field(w.pid(), "Uid"), status_field(getpid(), "Uid"));
  EXPECT_EQ(status_field(w.pid(), "Groups"), status_field(getpid(), "Groups"));
  EXPECT_EQ(limits_row(w.pid(), "Max open files"), limits_row(getpid(), "Max open files"));
  EXPECT_EQ(w.end(), 0);
}

TEST(IdentityChild, AUsersNofileWinsOverTheRestoredOne) {
  rlimit orig{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &orig), 0);
  rlimit restored = orig;
  restored.rlim_cur = std::min<rlim_t>(orig.rlim_cur, 300);
  ChildContext ctx;
  ctx.nofile = &restored;
  IdentitySpec id;
  id.rlimits = {{RLIMIT_NOFILE, 50, std::min<rlim_t>(orig.rlim_max, 1000)}};
  Waiting w(id, ctx);
  ASSERT_TRUE(w.r.ok) << w.r.stage;
  EXPECT_EQ(limits_row(w.pid(), "Max open files"),
            "50 " + std::to_string(std::min<rlim_t>(orig.rlim_max, 1000)));
  EXPECT_EQ(w.end(), 0);
  // Another limit of the user's leaves the restore in place.
  IdentitySpec other;
  other.rlimits = {{RLIMIT_CORE, 0, 0}};
  Waiting w2(other, ctx);
  ASSERT_TRUE(w2.r.ok) << w2.r.stage;
  EXPECT_EQ(limits_row(w2.pid(), "Max open files")
                .substr(0, std::to_string(restored.rlim_cur).size() + 1),
            std::to_string(restored.rlim_cur) + " ");
  EXPECT_EQ(w2.end(), 0);
}

TEST(IdentityChild, FailuresNameTheirStage) {
  NEEDS_ROOT();
  IdentitySpec big;
  long nr_open = 0;
  std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
  ASSERT_GT(nr_open, 0);
  big.rlimits = {{RLIMIT_NOFILE, 10, static_cast<uint64_t>(nr_open) + 1}};
  SpawnResult r = Waiting(big).r;
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, EPERM);
  EXPECT_STREQ(r.stage, "rlimit");

  IdentitySpec unknown;
  unknown.uid = named("corral-no-such-user");
  r = Waiting(unknown).r;
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, ENOENT);
  EXPECT_STREQ(r.stage, "uid");
}

std::string outcome(const IdentitySpec& id, const std::optional<std::string>& cd = {},
                    const std::string& path = "/bin/cat") {
  SpawnSpec s;
  s.path = path;
  s.argv = {"x"};
  s.in = StdinMode::Null;
  s.out = StdoutMode::Null;
  s.cd = cd;
  s.identity = id;
  SpawnResult r = spawn_child(s);
  if (r.ok) {
    waitpid(r.child.pid, nullptr, 0);
    return "ok";
  }
  return std::string(strerrorname_np(r.error)) + " " + r.stage;
}

TEST(IdentityChild, UnprivilegedFailuresNameTheirStage) {
  NEEDS_ROOT();
  passwd* pw = getpwnam("nobody");
  if (!pw) GTEST_SKIP() << "no user nobody on this system";
  gid_t own = pw->pw_gid;
  auto no_groups = [] { return std::vector<IdRef>{}; };
  IdentitySpec setgroups_id;
  setgroups_id.groups = std::vector<IdRef>{numbered(0)};
  IdentitySpec setgid_id;
  setgid_id.gid = numbered(0);
  IdentitySpec setuid_id;
  setuid_id.uid = numbered(0);
  setuid_id.gid = numbered(own);
  setuid_id.groups = no_groups();
  IdentitySpec nice_id;
  nice_id.nice = -5;
  IdentitySpec raise_id;
  raise_id.rlimits = {{RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY}};
  IdentitySpec self_id;  // our own user, by name: allowed without privilege
  self_id.uid = named("nobody");
  self_id.groups = no_groups();
  std::string got = as_nobody([&] {
    rlimit core{0, 0};
    setrlimit(RLIMIT_CORE, &core);
    return outcome(setgroups_id) + "," + outcome(setgid_id) + "," + outcome(setuid_id) + "," +
           outcome(nice_id) + "," + outcome(raise_id) + "," + outcome(self_id);
  });
  EXPECT_EQ(got, "EPERM setgroups,EPERM setgid,EPERM setuid,EACCES nice,EPERM rlimit,ok");
}

// A root-only directory and program, for what the dropped user may not reach.
struct RootOnly {
  std::string dir, prog;
  RootOnly(const RootOnly&) = delete;
  RootOnly& operator=(const RootOnly&) = delete;
  RootOnly() {
    char tmpl[] = "/tmp/corral_identity_test.XXXXXX";
    dir = mkdtemp(tmpl);
    chmod(dir.c_str(), 0700);
    prog = dir + "/prog";
  }
  ~RootOnly() { (void)!system(("rm -rf '" + dir + "'").c_str()); }
};

TEST(IdentityChild, ChdirAndExecHappenAsTheNewUser) {
  NEEDS_ROOT();
  if (!getpwnam("nobody")) GTEST_SKIP() << "no user nobody on this system";
  RootOnly ro;
  IdentitySpec id;
  id.uid = named("nobody");
  EXPECT_EQ(outcome(id, ro.dir), "EACCES chdir") << "cd is entered as the program's user";
  EXPECT_EQ(outcome(IdentitySpec{}, ro.dir), "ok");
  // A world-executable program in a world-readable place still runs.
  EXPECT_EQ(outcome(id, std::string("/")), "ok");
  // A program only root may run is refused at exec.
  std::string pub = "/tmp/corral_identity_prog." + std::to_string(getpid());
  ASSERT_EQ(system(("cp /bin/true " + pub + " && chmod 0700 " + pub).c_str()), 0);
  EXPECT_EQ(outcome(id, {}, pub), "EACCES exec");
  unlink(pub.c_str());
}

TEST(IdentityChild, ParentDeathStillKillsAChildThatChangedItsUid) {
  NEEDS_ROOT();
  if (!getpwnam("nobody")) GTEST_SKIP() << "no user nobody on this system";
  // A subreaper stands in for init: the "spawner" starts the child and
  // dies; the orphaned child comes to the subreaper, which reaps it.
  std::string out = harness::in_fork([]() -> std::string {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t spawner = fork();
    if (spawner == 0) {
      SpawnSpec s;
      s.path = "/bin/sleep";
      s.argv = {"sleep", "5"};
      s.in = StdinMode::Null;
      s.out = StdoutMode::Null;
      s.err = StderrMode::Null;
      s.identity.uid = named("nobody");
      SpawnResult r = spawn_child(s);
      _exit(r.ok ? 0 : 1);
    }
    int st = 0;
    waitpid(spawner, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return "spawn failed";
    // The next child to end is the orphan.
    pid_t got = waitpid(-1, &st, 0);
    return got > 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? "killed" : "outlived its parent";
  });
  EXPECT_EQ(out, "killed");
}

}  // namespace
}  // namespace corral::spawner
