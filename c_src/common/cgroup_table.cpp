// The v1<->v2 cgroup table and its conversions (see cgroup_table.h).
#include "cgroup_table.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace corral::cgroup_table {
namespace {

// v1 cpu.shares' range (the kernel's MIN_SHARES and MAX_SHARES), v2
// cpu.weight's and io.weight's.
constexpr uint64_t kMinShares = 2, kMaxShares = 1 << 18;
constexpr uint64_t kMinWeight = 1, kMaxWeight = 10000, kDefaultWeight = 100;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

bool parse_u64(std::string_view s, uint64_t& v) {
  if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string_view::npos)
    return false;
  v = 0;
  for (char c : s) {
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  return true;
}

// A v1 integer file as written back by the kernel; "-1" (no limit) is
// reported as unlimited.
bool read_v1_amount(std::string_view s, uint64_t& v, bool& unlimited) {
  s = trim(s);
  unlimited = s == "-1";
  if (unlimited) return true;
  if (!parse_bytes(s, v)) return false;
  unlimited = v1_unlimited(v);
  return true;
}

// Words of a line, split on spaces.
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t i = s.find(' ');
    if (i != 0) out.push_back(s.substr(0, i));
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return out;
}

std::vector<std::string_view> lines(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t i = s.find('\n');
    if (i != 0) out.push_back(s.substr(0, i));
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return out;
}

int bad_value(const Entry& e, std::string_view v, std::string& why) {
  why = std::string(e.v2) + ": bad value \"" + std::string(v) + "\"";
  return -EINVAL;
}

int bad_content(const Entry& e, std::string_view file, std::string& why) {
  why = std::string(e.v2) + ": unexpected content in " + std::string(file);
  return -EINVAL;
}

int missing(const Entry& e, std::string_view file, std::string& why) {
  why = std::string(e.v2) + ": the cgroup v1 leaf has no " + std::string(file);
  return -ENOENT;
}

const char* errno_name(int e) {
  switch (e) {
    case EINVAL:
      return "einval";
    case ENOENT:
      return "enoent";
    case EOPNOTSUPP:
      return "eopnotsupp";
    case EACCES:
      return "eacces";
    default:
      return "eio";
  }
}

// The NUL-separated fields of a request.
std::vector<std::string_view> fields(std::string_view s) {
  std::vector<std::string_view> out;
  while (true) {
    size_t i = s.find('\0');
    out.push_back(s.substr(0, i));
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return out;
}

// "+content" or "-" into a Files slot; false for anything else.
bool file_field(std::string_view f, std::optional<std::string>& ret) {
  if (f == "-") {
    ret.reset();
    return true;
  }
  if (f.empty() || f[0] != '+') return false;
  ret = std::string(f.substr(1));
  return true;
}

}  // namespace

bool parse_bytes(std::string_view s, uint64_t& ret) {
  unsigned shift = 0;
  if (!s.empty()) {
    static constexpr std::string_view kSuffixes = "KMGTPE";
    char c =
        s.back() >= 'a' && s.back() <= 'z' ? static_cast<char>(s.back() - 'a' + 'A') : s.back();
    size_t i = kSuffixes.find(c);
    if (i != std::string_view::npos) {
      shift = 10 * static_cast<unsigned>(i + 1);
      s.remove_suffix(1);
    }
  }
  uint64_t v;
  if (!parse_u64(s, v) || (shift && v > (UINT64_MAX >> shift))) return false;
  ret = v << shift;
  return true;
}

bool v1_unlimited(uint64_t bytes) { return bytes >= (uint64_t{1} << 63) - (uint64_t{1} << 16); }

const Entry* find(std::string_view v2) {
  for (const Entry& e : kTable)
    if (e.v2 == v2) return &e;
  return nullptr;
}

std::string v1_controller(std::string_view v2) { return v2 == "io" ? "blkio" : std::string(v2); }

std::string v2_controller(std::string_view v1) {
  if (v1 == "blkio") return "io";
  if (v1 == "cpuacct") return "cpu";
  return std::string(v1);
}

int from_v1(const Entry& e, const Files& v1, std::string& ret, std::string& why) {
  ret.clear();
  auto need = [&](size_t i) -> const std::string* { return v1[i] ? &*v1[i] : nullptr; };
  switch (e.kind) {
    case Kind::kNone:
      why = std::string(e.v2) + " has no cgroup v1 equivalent (this controller is on v1)";
      return -EOPNOTSUPP;
    case Kind::kSame: {
      const std::string* s = need(0);
      if (!s) return missing(e, e.v1[0], why);
      ret = std::string(trim(*s)) + "\n";
      return 0;
    }
    case Kind::kAmount: {
      const std::string* s = need(0);
      if (!s) return missing(e, e.v1[0], why);
      uint64_t v;
      bool unlimited;
      if (!read_v1_amount(*s, v, unlimited)) return bad_content(e, e.v1[0], why);
      ret = (unlimited ? std::string("max") : std::to_string(v)) + "\n";
      return 0;
    }
    case Kind::kSwap: {
      const std::string *memsw = need(0), *limit = need(1);
      if (!memsw) return missing(e, e.v1[0], why);
      if (!limit) return missing(e, e.v1[1], why);
      uint64_t sw, mem;
      bool sw_max, mem_max;
      if (!read_v1_amount(*memsw, sw, sw_max)) return bad_content(e, e.v1[0], why);
      if (!read_v1_amount(*limit, mem, mem_max)) return bad_content(e, e.v1[1], why);
      // memsw bounds memory + swap: with memory unlimited too, swap is.
      if (sw_max || mem_max)
        ret = sw_max ? "max\n" : std::to_string(sw) + "\n";
      else
        ret = std::to_string(sw > mem ? sw - mem : 0) + "\n";
      return 0;
    }
    case Kind::kCpuMax: {
      const std::string *quota = need(0), *period = need(1);
      if (!quota) return missing(e, e.v1[0], why);
      if (!period) return missing(e, e.v1[1], why);
      std::string_view q = trim(*quota), p = trim(*period);
      uint64_t n;
      if (q != "-1" && !parse_u64(q, n)) return bad_content(e, e.v1[0], why);
      if (!parse_u64(p, n)) return bad_content(e, e.v1[1], why);
      ret = (q == "-1" ? std::string("max") : std::string(q)) + " " + std::string(p) + "\n";
      return 0;
    }
    case Kind::kCpuWeight: {
      const std::string* s = need(0);
      if (!s) return missing(e, e.v1[0], why);
      uint64_t shares;
      if (!parse_u64(trim(*s), shares) || shares > kMaxShares) return bad_content(e, e.v1[0], why);
      // The kernel's sched_weight_to_cgroup: rounded, then clamped.
      uint64_t w = (shares * kDefaultWeight + 512) / 1024;
      ret = std::to_string(std::clamp(w, kMinWeight, kMaxWeight)) + "\n";
      return 0;
    }
    case Kind::kIoWeight: {
      for (size_t i = 0; i < 2; i++) {
        if (!v1[i]) continue;
        uint64_t w;
        if (!parse_u64(trim(*v1[i]), w)) return bad_content(e, e.v1[i], why);
        ret = "default " + std::to_string(w) + "\n";
        return 0;
      }
      why = std::string(e.v2) + ": the cgroup v1 leaf has neither " + std::string(e.v1[0]) +
            " nor " + std::string(e.v1[1]);
      return -ENOENT;
    }
    case Kind::kMemoryEvents: {
      if (!v1[0] && !v1[1]) return missing(e, e.v1[0], why);
      uint64_t failcnt = 0;
      if (v1[0] && !parse_u64(trim(*v1[0]), failcnt)) return bad_content(e, e.v1[0], why);
      // A limit hit is what v2 counts as "max".
      ret = "max " + std::to_string(failcnt) + "\n";
      if (v1[1])
        for (std::string_view line : lines(*v1[1])) {
          std::vector<std::string_view> w = words(line);
          if (w.size() == 2 && w[0] == "oom_kill") ret += "oom_kill " + std::string(w[1]) + "\n";
        }
      return 0;
    }
    case Kind::kCpuStat: {
      const std::string* stat = need(0);
      if (!stat) return missing(e, e.v1[0], why);
      if (v1[1]) {
        uint64_t ns;
        if (!parse_u64(trim(*v1[1]), ns)) return bad_content(e, e.v1[1], why);
        ret += "usage_usec " + std::to_string(ns / 1000) + "\n";
      }
      // v1 counts times in ns as "<name>_time", v2 in us as "<name>_usec".
      constexpr std::string_view kTime = "_time";
      for (std::string_view line : lines(*stat)) {
        std::vector<std::string_view> w = words(line);
        uint64_t v;
        if (w.size() != 2 || !parse_u64(w[1], v)) return bad_content(e, e.v1[0], why);
        if (w[0].size() > kTime.size() && w[0].substr(w[0].size() - kTime.size()) == kTime)
          ret += std::string(w[0].substr(0, w[0].size() - kTime.size())) + "_usec " +
                 std::to_string(v / 1000) + "\n";
        else
          ret += std::string(w[0]) + " " + std::string(w[1]) + "\n";
      }
      return 0;
    }
  }
  return -EINVAL;
}

int to_v1(const Entry& e, std::string_view v2, const Files& current, std::vector<Write>& ret,
          std::string& why) {
  ret.clear();
  if (e.kind == Kind::kNone) {
    why = std::string(e.v2) + " has no cgroup v1 equivalent (this controller is on v1)";
    return -EOPNOTSUPP;
  }
  if (!e.writable) {
    why = std::string(e.v2) + " is read-only";
    return -EACCES;
  }
  std::string_view v = trim(v2);
  switch (e.kind) {
    case Kind::kSame:
      if (v.empty()) return bad_value(e, v2, why);
      ret.push_back({std::string(e.v1[0]), std::string(v)});
      return 0;
    case Kind::kAmount: {
      uint64_t bytes;
      if (v == "max") {
        ret.push_back({std::string(e.v1[0]), "-1"});
      } else if (parse_bytes(v, bytes)) {
        ret.push_back({std::string(e.v1[0]), std::to_string(bytes)});
      } else {
        return bad_value(e, v2, why);
      }
      return 0;
    }
    case Kind::kSwap: {
      if (v == "max") {
        ret.push_back({std::string(e.v1[0]), "-1"});
        return 0;
      }
      uint64_t swap, mem;
      bool unlimited = true;
      if (!parse_bytes(v, swap)) return bad_value(e, v2, why);
      if (current[1] && !read_v1_amount(*current[1], mem, unlimited))
        return bad_content(e, e.v1[1], why);
      if (unlimited) {
        why = std::string(e.v2) +
              " needs a numeric memory.max on cgroup v1 (memory.memsw.limit_in_bytes is "
              "memory + swap)";
        return -EINVAL;
      }
      if (mem > UINT64_MAX - swap) return bad_value(e, v2, why);
      ret.push_back({std::string(e.v1[0]), std::to_string(mem + swap)});
      return 0;
    }
    case Kind::kCpuMax: {
      std::vector<std::string_view> p = words(v);
      uint64_t n;
      if (p.empty() || p.size() > 2 || (p[0] != "max" && !parse_u64(p[0], n)) ||
          (p.size() == 2 && !parse_u64(p[1], n)))
        return bad_value(e, v2, why);
      // The period first: a quota is checked against the period it meets.
      if (p.size() == 2) ret.push_back({std::string(e.v1[1]), std::string(p[1])});
      ret.push_back({std::string(e.v1[0]), p[0] == "max" ? "-1" : std::string(p[0])});
      return 0;
    }
    case Kind::kCpuWeight: {
      uint64_t w;
      if (!parse_u64(v, w) || w < kMinWeight || w > kMaxWeight) return bad_value(e, v2, why);
      // The kernel's sched_weight_from_cgroup: weight 100 is 1024 shares.
      uint64_t shares = (w * 1024 + kDefaultWeight / 2) / kDefaultWeight;
      ret.push_back(
          {std::string(e.v1[0]), std::to_string(std::clamp(shares, kMinShares, kMaxShares))});
      return 0;
    }
    case Kind::kIoWeight: {
      std::string_view n = v;
      if (n.substr(0, 8) == "default ") n = trim(n.substr(8));
      uint64_t w;
      if (!parse_u64(n, w) || w < kMinWeight || w > kMaxWeight) return bad_value(e, v2, why);
      // BFQ's blkio.bfq.weight takes 1..1000 (default 100, as v2's);
      // CFQ's blkio.weight took 10..1000.
      for (size_t i = 0; i < 2; i++) {
        if (!current[i]) continue;
        uint64_t lo = e.v1[i] == "blkio.weight" ? 10 : 1;
        ret.push_back({std::string(e.v1[i]), std::to_string(std::clamp<uint64_t>(w, lo, 1000))});
        return 0;
      }
      why = std::string(e.v2) + ": the cgroup v1 leaf has neither " + std::string(e.v1[0]) +
            " nor " + std::string(e.v1[1]);
      return -ENOENT;
    }
    default:
      why = std::string(e.v2) + " is read-only";
      return -EACCES;
  }
}

std::string serve(std::string_view request) {
  auto fail = [](int e, const std::string& why) {
    return std::string("-") + errno_name(e) + '\0' + why;
  };
  if (request == "T") {
    std::string out;
    for (const Entry& e : kTable) {
      out += std::string(e.v2) + " " + std::string(e.controller);
      for (std::string_view f : e.v1)
        if (!f.empty()) out += " " + std::string(f);
      out += "\n";
    }
    return out;
  }
  std::vector<std::string_view> f = fields(request);
  // The file fields: one per v1 file of the entry, those left off absent.
  bool get = f[0] == "G", set = f[0] == "S";
  size_t first = get ? 2 : 3;
  if ((!get && !set) || f.size() <= first || f.size() > first + 2)
    return fail(EINVAL, "malformed request");
  const Entry* e = find(f[1]);
  if (!e) return fail(ENOENT, std::string(f[1]) + " is not in the cgroup v1 table");
  Files files;
  for (size_t i = first; i < f.size(); i++)
    if (!file_field(f[i], files[i - first])) return fail(EINVAL, "malformed request");
  std::string why;
  if (get) {
    std::string v;
    if (int rc = from_v1(*e, files, v, why); rc < 0) return fail(-rc, why);
    return "+" + v;
  }
  std::vector<Write> writes;
  if (int rc = to_v1(*e, f[2], files, writes, why); rc < 0) return fail(-rc, why);
  std::string out = "+";
  for (size_t i = 0; i < writes.size(); i++) {
    if (i) out += '\0';
    out += writes[i].file + '\0' + writes[i].value;
  }
  return out;
}

}  // namespace corral::cgroup_table
