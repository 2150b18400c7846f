// Memory events (c_src/spawner/cgroup_events.*): parsing, the v2 inotify
// watch and the v1 counts against fake cgroup trees in a temp dir, the
// coalescing, and the request's memory_events key.
#include "cgroup_events.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "options.h"
#include "request_terms.h"

using namespace corral::spawner;
using corral::frame::EventsFrame;
using events::Clock;
using events::Watch;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMax = 1u << 2, kOom = 1u << 3, kOomKill = 1u << 4, kHigh = 1u << 1;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/corral_events_XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  void put(const std::string& file, const std::string& text) const {
    std::ofstream(path + "/" + file, std::ios::trunc) << text;
  }
};

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 1000) == 1;
}

MemoryEventsSpec spec(uint32_t keys, bool all = false) {
  MemoryEventsSpec s;
  s.keys = keys;
  s.all = all;
  return s;
}

}  // namespace

TEST(CgroupEvents, ParsesMemoryEvents) {
  events::Counts c;
  uint32_t found = events::parse_v2(
      "low 1\nhigh 22\nmax 333\noom 4\noom_kill 5\noom_group_kill 6\nsock_throttled 9\n", c);
  EXPECT_EQ(corral::frame::kMemoryEventAll, found);
  EXPECT_EQ(1, c.v[0]);
  EXPECT_EQ(22, c.v[1]);
  EXPECT_EQ(333, c.v[2]);
  EXPECT_EQ(4, c.v[3]);
  EXPECT_EQ(5, c.v[4]);
  EXPECT_EQ(6, c.v[5]);
  // An older kernel's file (no oom_group_kill); garbage lines are skipped.
  events::Counts d;
  EXPECT_EQ(kMax | kOom, events::parse_v2("max 7\nbogus\noom x\noom 2", d));
  EXPECT_EQ(7, d.v[2]);
  EXPECT_EQ(2, d.v[3]);
}

TEST(CgroupEvents, V1ThresholdLiesJustBelowTheLimit) {
  uint64_t mib64 = uint64_t{64} << 20;
  EXPECT_EQ(mib64 - (1 << 20), events::v1_threshold(mib64));
  EXPECT_EQ((uint64_t{4} << 20) - (256 << 10), events::v1_threshold(uint64_t{4} << 20));
  EXPECT_EQ(0u, events::v1_threshold(9223372036854771712ull));  // unlimited
  EXPECT_EQ(0u, events::v1_threshold(0));
  EXPECT_EQ(50u, events::v1_threshold(100));  // below the margin
}

// Writing memory.events (a regular file here) raises IN_MODIFY as the
// kernel's count changes do; the read reports the file's counts.
TEST(CgroupEvents, V2WatchReportsTheLatestCountsAtMostOncePerInterval) {
  TempDir d;
  d.put("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
  Watch w;
  std::string why;
  ASSERT_EQ(0, w.open(spec(corral::frame::kMemoryEventAll, true), d.path, {}, why)) << why;
  EXPECT_EQ(corral::frame::kMemoryEventAll, w.keys());
  ASSERT_EQ(1u, w.fds().size());
  int fd = w.fds()[0];
  EXPECT_FALSE(w.due());

  d.put("memory.events", "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\noom_group_kill 0\n");
  ASSERT_TRUE(readable(fd));
  auto t0 = Clock::now();
  w.woke(t0);
  ASSERT_TRUE(w.due());
  EXPECT_LE(*w.due(), t0);  // nothing sent yet: read at once
  EventsFrame f;
  ASSERT_TRUE(w.poll(t0, f));
  EXPECT_EQ(corral::frame::kMemoryEventAll, f.keys);
  EXPECT_EQ(3, f.counts[2]);
  w.sent(f);

  // Two changes within the interval: one read, after it, of the latest.
  d.put("memory.events", "low 0\nhigh 0\nmax 5\noom 0\noom_kill 0\noom_group_kill 0\n");
  d.put("memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n");
  ASSERT_TRUE(readable(fd));
  w.woke(t0 + std::chrono::milliseconds(10));
  ASSERT_TRUE(w.due());
  EXPECT_EQ(t0 + events::kInterval, *w.due());
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(0, poll(&p, 1, 0)) << "woke() drains the inotify events";
  ASSERT_TRUE(w.poll(*w.due(), f));
  EXPECT_EQ(9, f.counts[2]);
  EXPECT_EQ(1, f.counts[3]);
  EXPECT_EQ(1, f.counts[4]);
  w.sent(f);

  // Unchanged: nothing to send, and nothing more scheduled.
  w.woke(t0 + 3 * events::kInterval);
  EXPECT_FALSE(w.poll(t0 + 3 * events::kInterval, f));
  EXPECT_FALSE(w.due());

  // The last counts at the child's end go out when they changed.
  EXPECT_FALSE(w.last(f));
  d.put("memory.events", "low 0\nhigh 0\nmax 10\noom 1\noom_kill 1\noom_group_kill 0\n");
  ASSERT_TRUE(w.last(f));
  EXPECT_EQ(10, f.counts[2]);
  w.close();
  EXPECT_TRUE(w.fds().empty());
}

// Only the keys subscribed to are compared and reported.
TEST(CgroupEvents, V2ReportsOnlyTheKeysAskedFor) {
  TempDir d;
  d.put("memory.events", "max 0\noom_kill 0\n");
  Watch w;
  std::string why;
  ASSERT_EQ(0, w.open(spec(kOomKill), d.path, {}, why)) << why;
  d.put("memory.events", "max 50\noom_kill 0\n");
  EventsFrame f;
  auto t0 = Clock::now();
  w.woke(t0);
  EXPECT_FALSE(w.poll(t0, f)) << "max changed, but only oom_kill is wanted";
  // Reads are paced even when nothing was sent: a child changing max
  // thousands of times a second costs at most one read per interval.
  d.put("memory.events", "max 60\noom_kill 1\n");
  w.woke(t0 + std::chrono::milliseconds(1));
  ASSERT_TRUE(w.due());
  EXPECT_EQ(t0 + events::kInterval, *w.due());
  ASSERT_TRUE(w.poll(*w.due(), f));
  EXPECT_EQ(kOomKill, f.keys);
  EXPECT_EQ(1, f.counts[4]);
  EXPECT_EQ(0, f.counts[2]);
}

namespace {

// A fake v1 memory leaf with the files the watch reads and registers on;
// it takes the cgroup.event_control registrations as plain writes.
void put_v1_leaf(const TempDir& d, const std::string& oom_control, const std::string& limit) {
  d.put("memory.oom_control", oom_control);
  d.put("memory.failcnt", "0\n");
  d.put("memory.limit_in_bytes", limit);
  d.put("memory.usage_in_bytes", "1000\n");
  d.put("cgroup.event_control", "");
}

// The kernel signals the OOM eventfd (the watch's first fd) once per OOM.
void signal_ooms(const Watch& w, uint64_t n) {
  ASSERT_EQ(static_cast<ssize_t>(sizeof n), write(w.fds()[0], &n, sizeof n));
}

}  // namespace

// v1: max is memory.failcnt, oom the OOM notifications (the eventfd's
// count), oom_kill memory.oom_control's line.
TEST(CgroupEvents, V1CountsInV2Names) {
  TempDir d;
  put_v1_leaf(d, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", "67108864\n");
  Watch w;
  std::string why;
  ASSERT_EQ(0, w.open(spec(corral::frame::kMemoryEventAll, true), "", {d.path}, why)) << why;
  EXPECT_EQ(kMax | kOom | kOomKill, w.keys()) << "v1 has no low, high or oom_group_kill";
  ASSERT_EQ(2u, w.fds().size()) << "an OOM eventfd and a threshold eventfd";
  std::ifstream control(d.path + "/cgroup.event_control");
  std::string reg((std::istreambuf_iterator<char>(control)), std::istreambuf_iterator<char>());
  EXPECT_NE(std::string::npos, reg.find(" 66060288"))
      << "the threshold lies 1 MiB below the 64 MiB limit: " << reg;

  signal_ooms(w, 2);
  d.put("memory.failcnt", "17\n");
  d.put("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
  auto t0 = Clock::now();
  w.woke(t0);
  EventsFrame f;
  ASSERT_TRUE(w.poll(t0, f));
  EXPECT_EQ(17, f.counts[2]);
  EXPECT_EQ(2, f.counts[3]);
  EXPECT_EQ(1, f.counts[4]);
  w.sent(f);
  ASSERT_TRUE(w.due()) << "counts moved: read again";

  // Unchanged counts but usage above the threshold: no crossing will wake
  // us again, so keep reading.
  d.put("memory.usage_in_bytes", "67000000\n");
  EXPECT_FALSE(w.poll(t0 + events::kInterval, f));
  ASSERT_TRUE(w.due());
  EXPECT_EQ(t0 + 2 * events::kInterval, *w.due());
  d.put("memory.usage_in_bytes", "1000\n");
  EXPECT_FALSE(w.poll(*w.due(), f));
  EXPECT_FALSE(w.due());
}

// Before Linux 4.13 memory.oom_control has no oom_kill line; without a
// limit there is no threshold to register. max and oom are still counted.
TEST(CgroupEvents, V1WithoutOomKillOrLimit) {
  TempDir d;
  put_v1_leaf(d, "oom_kill_disable 0\nunder_oom 0\n", "9223372036854771712\n");
  d.put("memory.failcnt", "5\n");
  Watch w;
  std::string why;
  ASSERT_EQ(0, w.open(spec(kMax | kOom | kOomKill), "", {d.path}, why)) << why;
  ASSERT_EQ(1u, w.fds().size()) << "the OOM eventfd only";
  signal_ooms(w, 1);
  auto t0 = Clock::now();
  w.woke(t0);
  EventsFrame f;
  ASSERT_TRUE(w.poll(t0, f));
  EXPECT_EQ(kMax | kOom | kOomKill, f.keys);
  EXPECT_EQ(5, f.counts[2]);
  EXPECT_EQ(1, f.counts[3]);
  EXPECT_EQ(0, f.counts[4]);
}

TEST(CgroupEvents, V1RefusesKeysItLacks) {
  TempDir d;
  d.put("memory.oom_control", "oom_kill 0\n");
  Watch w;
  std::string why;
  EXPECT_EQ(-EOPNOTSUPP, w.open(spec(kHigh | kMax), "", {d.path}, why));
  EXPECT_NE(std::string::npos, why.find("high has no cgroup v1 equivalent")) << why;
  EXPECT_FALSE(w);
  EXPECT_TRUE(w.fds().empty());
}

TEST(CgroupEvents, NoMemoryLeafIsAnError) {
  TempDir d;  // neither memory.events nor memory.oom_control
  Watch w;
  std::string why;
  EXPECT_EQ(-ENOENT, w.open(spec(kMax), d.path, {d.path}, why));
  EXPECT_NE(std::string::npos, why.find("no memory cgroup")) << why;
}

TEST(CgroupEvents, DecodesTheRequestKey) {
  using namespace corral::spawner::terms;
  auto req = [](Enc events) {
    return map_term({{"path", bin("/bin/true")},
                     {"argv", bins({"true"})},
                     {"env", bins({})},
                     {"memory_events", std::move(events)}});
  };
  SpawnSpec s;
  std::string err;
  ASSERT_TRUE(decode_spawn_spec(req(atom("all")), s, err)) << err;
  EXPECT_TRUE(s.memory_events.all);
  EXPECT_EQ(corral::frame::kMemoryEventAll, s.memory_events.keys);
  ASSERT_TRUE(decode_spawn_spec(req(list({atom("max"), atom("oom_kill")})), s, err)) << err;
  EXPECT_FALSE(s.memory_events.all);
  EXPECT_EQ(kMax | kOomKill, s.memory_events.keys);
  for (const Enc& bad : {list({}), list({atom("max"), atom("max")}), list({atom("bogus")}),
                         atom("true"), lng(3), list({bin("max")})}) {
    EXPECT_FALSE(decode_spawn_spec(req(bad), s, err));
    EXPECT_NE(std::string::npos, err.find("memory_events")) << err;
  }
  // Absent: no subscription.
  ASSERT_TRUE(decode_spawn_spec(
      map_term({{"path", bin("/bin/true")}, {"argv", bins({"true"})}, {"env", bins({})}}), s, err));
  EXPECT_EQ(0u, s.memory_events.keys);
}
