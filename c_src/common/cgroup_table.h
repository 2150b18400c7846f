// The one table between cgroup v2 interface files and the v1 files of the
// same controllers, with the value conversions both ways.
//
// The spawner translates a child's settings with it at spawn
// (spawner/cgroup_config.cpp); the driver serves it to src/corral_cgroup.erl
// (port_control OP_CGROUP_V1, see serve()), which reads a running child's
// statistics and does cgget/cgset through it. Nothing else knows a v1 name.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral::cgroup_table {

// How a value crosses between the two forms.
enum class Kind {
  kNone,          // v2 only: no v1 equivalent (an error naming the file)
  kSame,          // the same value under another name
  kAmount,        // bytes: v2 "max" is -1 written, anything near 2^63 read
  kSwap,          // v2 swap alone; v1 memsw is memory + swap. {memsw, limit}
  kCpuMax,        // "quota period" <-> {cfs_quota_us, cfs_period_us}; -1 is max
  kCpuWeight,     // weight 1..10000 <-> shares, the kernel's own mapping
  kIoWeight,      // "default N" <-> the first of the two files the leaf has
  kMemoryEvents,  // {failcnt, oom_control} -> "max N\noom_kill N\n"
  kCpuStat,       // {cpu.stat, cpuacct.usage}: *_time ns -> *_usec, usage_usec
};

struct Entry {
  std::string_view v2;                 // the v2 interface file
  std::string_view controller;         // the v1 hierarchy's controller
  std::array<std::string_view, 2> v1;  // the v1 files a value comes from; "" unused
  Kind kind;
  bool writable;
};

inline constexpr Entry kTable[] = {
    {"memory.max", "memory", {"memory.limit_in_bytes", ""}, Kind::kAmount, true},
    {"memory.low", "memory", {"memory.soft_limit_in_bytes", ""}, Kind::kAmount, true},
    {"memory.swap.max",
     "memory",
     {"memory.memsw.limit_in_bytes", "memory.limit_in_bytes"},
     Kind::kSwap,
     true},
    {"memory.current", "memory", {"memory.usage_in_bytes", ""}, Kind::kSame, false},
    {"memory.peak", "memory", {"memory.max_usage_in_bytes", ""}, Kind::kSame, false},
    {"memory.events",
     "memory",
     {"memory.failcnt", "memory.oom_control"},
     Kind::kMemoryEvents,
     false},
    {"memory.high", "memory", {"", ""}, Kind::kNone, false},
    {"memory.min", "memory", {"", ""}, Kind::kNone, false},
    {"memory.oom.group", "memory", {"", ""}, Kind::kNone, false},
    {"cpu.max", "cpu", {"cpu.cfs_quota_us", "cpu.cfs_period_us"}, Kind::kCpuMax, true},
    {"cpu.weight", "cpu", {"cpu.shares", ""}, Kind::kCpuWeight, true},
    {"cpu.max.burst", "cpu", {"cpu.cfs_burst_us", ""}, Kind::kSame, true},
    {"cpu.stat", "cpu", {"cpu.stat", "cpuacct.usage"}, Kind::kCpuStat, false},
    {"io.weight", "blkio", {"blkio.bfq.weight", "blkio.weight"}, Kind::kIoWeight, true},
};

// The entry of a v2 file, or nullptr (a name the table does not know: the
// same on both, such as pids.max, cpuset.cpus and cpu.idle (v1 since Linux
// 5.15), or a raw v1 file).
const Entry* find(std::string_view v2);

// The v1 file i (Entry::v1[i]) behind a v2 file; "" where the table has
// none. Constant, so that code working on v1 files directly (the spawner's
// memory-events watch: memory.events is memory.failcnt and
// memory.oom_control) can static_assert that the names it needs exist.
constexpr std::string_view v1_file(std::string_view v2, size_t i) {
  for (const Entry& e : kTable)
    if (e.v2 == v2) return i < e.v1.size() ? e.v1[i] : std::string_view{};
  return {};
}

// v1's notification interface in every v1 leaf (v2 has none: its files
// raise inotify events instead). Writing "<eventfd> <fd of a file> [args]"
// to it arms the eventfd: on memory.oom_control for OOMs, on
// memory.usage_in_bytes with a threshold for crossings.
inline constexpr std::string_view kV1EventControl = "cgroup.event_control";

// Controller names: v1 "blkio" is v2 "io", v1 "cpuacct" is part of v2
// "cpu"; the others are the same on both.
std::string v1_controller(std::string_view v2);
std::string v2_controller(std::string_view v1);

// The contents of an entry's v1 files, in the order of Entry::v1; nullopt
// where the leaf has no such file.
using Files = std::array<std::optional<std::string>, 2>;

struct Write {
  std::string file, value;
  bool operator==(const Write& o) const { return file == o.file && value == o.value; }
};

// The v2 form of an entry's value (as the v2 file reads, newline-ended)
// from its v1 files. 0, or -errno with why naming the file:
// -EOPNOTSUPP (no v1 equivalent), -ENOENT (a needed file is missing),
// -EINVAL (a file's content is not what the kernel writes).
int from_v1(const Entry& e, const Files& v1, std::string& ret, std::string& why);

// The v1 writes, in order, that set an entry to the v2 value. current holds
// what to_v1 needs of the leaf: for kSwap the memory limit (the second
// file; memsw is memory + swap), for kIoWeight which file exists; the
// others ignore it. 0, or -errno with why naming the file and the value:
// -EOPNOTSUPP, -EACCES (a statistic), -EINVAL (a bad value), -ENOENT.
int to_v1(const Entry& e, std::string_view v2, const Files& current, std::vector<Write>& ret,
          std::string& why);

// The driver's OP_CGROUP_V1, as bytes in and out (fields NUL-separated; a
// file's content is "+content", or "-" when the leaf has no such file; one
// or two of them, as the entry has v1 files):
//   "T"                       -> one line per entry: "v2 controller [v1 [v1]]"
//   "G\0v2\0f1[\0f2]"          -> "+value"                  (from_v1)
//   "S\0v2\0value\0f1[\0f2]"   -> "+file\0value[\0file\0value...]" (to_v1)
// A failure is "-errno_name\0why" (errno_name as erlang's posix atoms:
// "einval", "enoent", "eopnotsupp", "eacces").
std::string serve(std::string_view request);

// Bytes from a v1 or v2 amount: decimal digits with an optional K/M/G/T/P/E
// suffix (powers of 1024, as the kernel's memparse). False when it is not
// one, or does not fit in 64 bits.
bool parse_bytes(std::string_view s, uint64_t& ret);

// Whether a v1 limit read back means "no limit": the kernel shows its
// largest page count in bytes, 2^63 less a page (at most 64 KiB pages).
bool v1_unlimited(uint64_t bytes);

}  // namespace corral::cgroup_table
