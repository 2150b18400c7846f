// The v1<->v2 cgroup table (common/cgroup_table.h): each conversion both
// ways, and serve(), the driver's OP_CGROUP_V1, as bytes in and out.
#include "cgroup_table.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <optional>
#include <string>
#include <vector>

namespace corral::cgroup_table {
namespace {

using Opt = std::optional<std::string>;
// Files from two contents (nullopt: no such file).
Files F(Opt a = std::nullopt, Opt b = std::nullopt) { return Files{std::move(a), std::move(b)}; }

const Entry& entry(std::string_view v2) {
  const Entry* e = find(v2);
  EXPECT_NE(nullptr, e) << v2;
  return *e;
}

// v1 files -> the v2 form; "" and the errno on failure.
std::string get(std::string_view v2, const Files& files, int* rc = nullptr) {
  std::string out, why;
  int r = from_v1(entry(v2), files, out, why);
  if (rc) *rc = r;
  if (r < 0) {
    EXPECT_NE(std::string::npos, why.find(v2)) << why;
  }
  return r < 0 ? "" : out;
}

std::vector<Write> set(std::string_view v2, std::string_view value, const Files& current = {},
                       int* rc = nullptr) {
  std::vector<Write> out;
  std::string why;
  int r = to_v1(entry(v2), value, current, out, why);
  if (rc) *rc = r;
  if (r < 0) {
    EXPECT_NE(std::string::npos, why.find(v2)) << why;
  }
  return out;
}

constexpr const char* kUnlimited4K = "9223372036854771712\n";   // 4 KiB pages
constexpr const char* kUnlimited64K = "9223372036854710272\n";  // 64 KiB pages

TEST(CgroupTable, NamesOnlyV2FilesWithTheirV1Controller) {
  EXPECT_EQ(nullptr, find("pids.max"));  // the same name on both
  EXPECT_EQ(nullptr, find("cpu.idle"));  // on v1 too since Linux 5.15
  EXPECT_EQ(nullptr, find("memory.limit_in_bytes"));
  EXPECT_EQ("memory", entry("memory.max").controller);
  EXPECT_EQ("blkio", entry("io.weight").controller);
  EXPECT_EQ("blkio", v1_controller("io"));
  EXPECT_EQ("memory", v1_controller("memory"));
  EXPECT_EQ("io", v2_controller("blkio"));
  EXPECT_EQ("cpu", v2_controller("cpuacct"));
  EXPECT_EQ("pids", v2_controller("pids"));
  for (const Entry& e : kTable) {
    EXPECT_EQ(e.v2.substr(0, e.v2.find('.')), v2_controller(e.controller)) << e.v2;
    EXPECT_EQ(e.kind != Kind::kNone, !e.v1[0].empty()) << e.v2;
  }
}

// The spawner's memory-events watch (spawner/cgroup_events.cpp) reads and
// registers on these v1 files by asking the table for them.
TEST(CgroupTable, V1FileNamesTheFilesBehindAV2File) {
  static_assert(v1_file("memory.events", 0) == "memory.failcnt");
  EXPECT_EQ("memory.failcnt", v1_file("memory.events", 0));
  EXPECT_EQ("memory.oom_control", v1_file("memory.events", 1));
  EXPECT_EQ("memory.usage_in_bytes", v1_file("memory.current", 0));
  EXPECT_EQ("memory.limit_in_bytes", v1_file("memory.max", 0));
  EXPECT_EQ("", v1_file("memory.current", 1));  // one v1 file
  EXPECT_EQ("", v1_file("memory.events", 2));   // past the entry's files
  EXPECT_EQ("", v1_file("memory.high", 0));     // v2 only
  EXPECT_EQ("", v1_file("pids.max", 0));        // the same on both: not in the table
  EXPECT_EQ("", v1_file("memory.failcnt", 0));  // a v1 name is no key
  for (const Entry& e : kTable)
    for (size_t i = 0; i < e.v1.size(); i++) EXPECT_EQ(e.v1[i], v1_file(e.v2, i)) << e.v2;
  EXPECT_EQ("cgroup.event_control", kV1EventControl);
}

TEST(CgroupTable, AmountMaxIsMinusOneWrittenAndNearTwoToThe63Read) {
  EXPECT_EQ((std::vector<Write>{{"memory.limit_in_bytes", "-1"}}), set("memory.max", "max"));
  EXPECT_EQ((std::vector<Write>{{"memory.limit_in_bytes", "67108864"}}), set("memory.max", "64M"));
  EXPECT_EQ((std::vector<Write>{{"memory.limit_in_bytes", "1024"}}), set("memory.max", "1k\n"));
  EXPECT_EQ((std::vector<Write>{{"memory.soft_limit_in_bytes", "4096"}}),
            set("memory.low", "4096"));
  EXPECT_EQ("max\n", get("memory.max", F(kUnlimited4K)));
  EXPECT_EQ("max\n", get("memory.max", F(kUnlimited64K)));
  EXPECT_EQ("max\n", get("memory.low", F("18446744073709551615\n")));  // before 3.19
  EXPECT_EQ("67108864\n", get("memory.max", F("67108864\n")));
  int rc;
  for (const char* bad :
       {"", "-5", "64X", "0x10", "max1", "99999999999999999999", "17179869184G"}) {
    set("memory.max", bad, {}, &rc);
    EXPECT_EQ(-EINVAL, rc) << bad;
  }
  get("memory.max", F(std::nullopt), &rc);
  EXPECT_EQ(-ENOENT, rc);
}

TEST(CgroupTable, SwapIsMemswLessTheMemoryLimit) {
  Files limit = F(std::nullopt, "67108864\n");
  EXPECT_EQ((std::vector<Write>{{"memory.memsw.limit_in_bytes", "68157440"}}),
            set("memory.swap.max", "1M", limit));
  EXPECT_EQ((std::vector<Write>{{"memory.memsw.limit_in_bytes", "-1"}}),
            set("memory.swap.max", "max", {}));
  EXPECT_EQ("1048576\n", get("memory.swap.max", F("68157440\n", "67108864\n")));
  EXPECT_EQ("max\n", get("memory.swap.max", F(kUnlimited4K, "67108864\n")));
  EXPECT_EQ("0\n", get("memory.swap.max", F("67108864\n", "67108864\n")));
  // With no memory limit, memsw bounds swap alone.
  EXPECT_EQ("1048576\n", get("memory.swap.max", F("1048576\n", kUnlimited4K)));
  // A swap limit needs a memory limit to add it to.
  int rc;
  for (const Files& f : {F(), F(std::nullopt, kUnlimited4K), F(std::nullopt, "-1")}) {
    set("memory.swap.max", "1M", f, &rc);
    EXPECT_EQ(-EINVAL, rc);
  }
  set("memory.swap.max", "1M", F(std::nullopt, "18446744073709551615"), &rc);
  EXPECT_EQ(-EINVAL, rc);
  get("memory.swap.max", F(std::nullopt, "67108864\n"), &rc);
  EXPECT_EQ(-ENOENT, rc);  // no swap accounting on this host
}

TEST(CgroupTable, CpuMaxIsQuotaAndPeriodWithMinusOneForMax) {
  EXPECT_EQ((std::vector<Write>{{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", "10000"}}),
            set("cpu.max", "10000 100000"));
  EXPECT_EQ((std::vector<Write>{{"cpu.cfs_quota_us", "-1"}}), set("cpu.max", "max"));
  EXPECT_EQ((std::vector<Write>{{"cpu.cfs_period_us", "50000"}, {"cpu.cfs_quota_us", "-1"}}),
            set("cpu.max", "max 50000\n"));
  EXPECT_EQ("max 100000\n", get("cpu.max", F("-1\n", "100000\n")));
  EXPECT_EQ("10000 100000\n", get("cpu.max", F("10000\n", "100000\n")));
  int rc;
  for (const char* bad : {"", "ten", "1 2 3", "-1 100000", "max max"}) {
    set("cpu.max", bad, {}, &rc);
    EXPECT_EQ(-EINVAL, rc) << bad;
  }
  get("cpu.max", F("-1\n"), &rc);
  EXPECT_EQ(-ENOENT, rc);
  get("cpu.max", F("x\n", "100000\n"), &rc);
  EXPECT_EQ(-EINVAL, rc);
}

TEST(CgroupTable, CpuWeightAndSharesMapAsTheKernelDoes) {
  // sched_weight_from_cgroup: round(weight * 1024 / 100), at least 2.
  const std::pair<const char*, const char*> pairs[] = {
      {"1", "10"}, {"50", "512"}, {"100", "1024"}, {"10000", "102400"}};
  for (auto [w, shares] : pairs) {
    EXPECT_EQ((std::vector<Write>{{"cpu.shares", shares}}), set("cpu.weight", w)) << w;
    EXPECT_EQ(std::string(w) + "\n", get("cpu.weight", F(std::string(shares) + "\n"))) << w;
  }
  EXPECT_EQ((std::vector<Write>{{"cpu.shares", "31"}}), set("cpu.weight", "3"));  // 30.72
  // sched_weight_to_cgroup: rounded, then clamped to 1..10000.
  EXPECT_EQ("1\n", get("cpu.weight", F("2\n")));
  EXPECT_EQ("10000\n", get("cpu.weight", F("262144\n")));
  EXPECT_EQ("20\n", get("cpu.weight", F("200\n")));  // 19.53
  // Every weight comes back from its shares.
  for (int w = 1; w <= 10000; w++) {
    std::vector<Write> out = set("cpu.weight", std::to_string(w));
    ASSERT_EQ(1u, out.size());
    ASSERT_EQ(std::to_string(w) + "\n", get("cpu.weight", F(out[0].value)));
  }
  int rc;
  for (const char* bad : {"0", "10001", "", "1.5"}) {
    set("cpu.weight", bad, {}, &rc);
    EXPECT_EQ(-EINVAL, rc) << bad;
  }
}

TEST(CgroupTable, IoWeightGoesToTheWeightFileTheLeafHas) {
  Files bfq = F(""), cfq = F(std::nullopt, "");
  EXPECT_EQ((std::vector<Write>{{"blkio.bfq.weight", "200"}}), set("io.weight", "200", bfq));
  EXPECT_EQ((std::vector<Write>{{"blkio.bfq.weight", "1000"}}),
            set("io.weight", "default 5000", bfq));
  EXPECT_EQ((std::vector<Write>{{"blkio.bfq.weight", "1"}}), set("io.weight", "1", bfq));
  EXPECT_EQ((std::vector<Write>{{"blkio.weight", "10"}}), set("io.weight", "1", cfq));
  EXPECT_EQ("default 100\n", get("io.weight", F("100\n")));
  EXPECT_EQ("default 500\n", get("io.weight", F(std::nullopt, "500\n")));
  int rc;
  set("io.weight", "100", {}, &rc);
  EXPECT_EQ(-ENOENT, rc);
  set("io.weight", "0", bfq, &rc);
  EXPECT_EQ(-EINVAL, rc);
  get("io.weight", {}, &rc);
  EXPECT_EQ(-ENOENT, rc);
}

TEST(CgroupTable, StatisticsReadInV2FormAndAreReadOnly) {
  EXPECT_EQ("4096\n", get("memory.current", F("4096\n")));
  EXPECT_EQ("8192\n", get("memory.peak", F("8192\n")));
  EXPECT_EQ("max 3\noom_kill 1\n",
            get("memory.events", F("3\n", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")));
  EXPECT_EQ("max 3\n", get("memory.events", F("3\n")));
  EXPECT_EQ(
      "usage_usec 1234\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\nnr_bursts 0\n"
      "burst_usec 0\n",
      get("cpu.stat", {"nr_periods 5\nnr_throttled 2\nthrottled_time 7000\nnr_bursts 0\n"
                       "burst_time 0\n",
                       "1234567\n"}));
  EXPECT_EQ("nr_periods 5\n", get("cpu.stat", F("nr_periods 5\n")));
  // cpu.max.burst is cpu.cfs_burst_us, both in us, and writable.
  EXPECT_EQ("1000\n", get("cpu.max.burst", F("1000\n")));
  EXPECT_EQ((std::vector<Write>{{"cpu.cfs_burst_us", "2000"}}), set("cpu.max.burst", "2000\n"));
  int burst_rc;
  set("cpu.max.burst", "\n", {}, &burst_rc);
  EXPECT_EQ(-EINVAL, burst_rc);
  int rc;
  for (const char* f : {"memory.current", "memory.peak", "memory.events", "cpu.stat"}) {
    set(f, "1", {}, &rc);
    EXPECT_EQ(-EACCES, rc) << f;
  }
}

TEST(CgroupTable, V2OnlyFilesAreErrorsNamingThem) {
  int rc;
  for (const char* f : {"memory.high", "memory.min", "memory.oom.group"}) {
    set(f, "1", {}, &rc);
    EXPECT_EQ(-EOPNOTSUPP, rc) << f;
    get(f, {}, &rc);
    EXPECT_EQ(-EOPNOTSUPP, rc) << f;
  }
}

std::string req(std::initializer_list<std::string_view> fields) {
  std::string out;
  for (std::string_view f : fields) {
    if (!out.empty()) out += '\0';
    out += f;
  }
  return out;
}

TEST(CgroupTableServe, TheTableGetAndSetAsBytes) {
  std::string table = serve("T");
  EXPECT_NE(std::string::npos, table.find("memory.max memory memory.limit_in_bytes\n")) << table;
  EXPECT_NE(std::string::npos, table.find("cpu.max cpu cpu.cfs_quota_us cpu.cfs_period_us\n"));
  EXPECT_NE(std::string::npos, table.find("memory.high memory\n"));
  size_t lines = 0;
  for (char c : table) lines += c == '\n';
  EXPECT_EQ(std::size(kTable), lines);

  EXPECT_EQ("+max\n", serve(req({"G", "memory.max", "+9223372036854771712\n", "-"})));
  EXPECT_EQ("+4096\n", serve(req({"G", "memory.current", "+4096\n"})));  // one v1 file
  EXPECT_EQ("+max 100000\n", serve(req({"G", "cpu.max", "+-1\n", "+100000\n"})));
  EXPECT_EQ(req({"+memory.limit_in_bytes", "-1"}),
            serve(req({"S", "memory.max", "max", "-", "-"})));
  EXPECT_EQ(req({"+cpu.cfs_period_us", "100000", "cpu.cfs_quota_us", "5000"}),
            serve(req({"S", "cpu.max", "5000 100000", "-", "-"})));
  EXPECT_EQ(req({"+memory.memsw.limit_in_bytes", "2048"}),
            serve(req({"S", "memory.swap.max", "1024", "-", "+1024\n"})));

  auto error = [](const std::string& r) { return r.substr(0, r.find('\0')); };
  EXPECT_EQ("-einval", error(serve(req({"S", "memory.max", "lots", "-", "-"}))));
  EXPECT_EQ("-eopnotsupp", error(serve(req({"G", "memory.high", "-", "-"}))));
  EXPECT_EQ("-eacces", error(serve(req({"S", "memory.current", "1", "-", "-"}))));
  EXPECT_EQ("-enoent", error(serve(req({"G", "pids.max", "-", "-"}))));
  EXPECT_EQ("-enoent", error(serve(req({"G", "memory.max", "-", "-"}))));
  for (const std::string& bad : {std::string(), std::string("X"), req({"G", "memory.max"}),
                                 req({"G", "memory.max", "5", "-"}), req({"S", "memory.max", "1"}),
                                 req({"G", "memory.max", "-", "-", "-"})})
    EXPECT_EQ("-einval", error(serve(bad))) << bad;
}

TEST(CgroupTable, ParseBytesTakesTheKernelsSuffixes) {
  uint64_t v;
  ASSERT_TRUE(parse_bytes("0", v));
  EXPECT_EQ(0u, v);
  ASSERT_TRUE(parse_bytes("3k", v));
  EXPECT_EQ(3072u, v);
  ASSERT_TRUE(parse_bytes("2G", v));
  EXPECT_EQ(uint64_t{2} << 30, v);
  ASSERT_TRUE(parse_bytes("15E", v));
  EXPECT_EQ(uint64_t{15} << 60, v);
  ASSERT_TRUE(parse_bytes("18446744073709551615", v));
  EXPECT_EQ(UINT64_MAX, v);
  for (const char* bad : {"", "k", "16E", "18446744073709551616", "1 k", "1kb", "-1"})
    EXPECT_FALSE(parse_bytes(bad, v)) << bad;
  EXPECT_TRUE(v1_unlimited(9223372036854771712u));
  EXPECT_TRUE(v1_unlimited(9223372036854710272u));
  EXPECT_FALSE(v1_unlimited(uint64_t{1} << 62));
}

}  // namespace
}  // namespace corral::cgroup_table
