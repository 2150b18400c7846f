// Memory events of a running child (see cgroup_events.h).
#include "cgroup_events.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "cgroup_table.h"
#include "sysfs.h"

namespace corral::spawner::events {
namespace {

namespace table = corral::cgroup_table;

// The v1 files of the memory leaf, by the v2 files they stand for in the
// table: memory.events' counts (failcnt and oom_control, which the OOM
// eventfd is registered on too), and the usage whose crossing of a
// threshold under the limit wakes the watch.
constexpr std::string_view kV2Events = "memory.events";
constexpr std::string_view kOomControl = table::v1_file(kV2Events, 1);
constexpr std::string_view kUsage = table::v1_file("memory.current", 0);
constexpr std::string_view kLimit = table::v1_file("memory.max", 0);
static_assert(!table::v1_file(kV2Events, 0).empty() && !kOomControl.empty() && !kUsage.empty() &&
              !kLimit.empty());

std::string in(const std::string& dir, std::string_view file) {
  return dir + "/" + std::string(file);
}

bool exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

bool parse_u64(std::string_view s, uint64_t& v) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string_view::npos)
    return false;
  v = strtoull(std::string(s).c_str(), nullptr, 10);
  return true;
}

// Registers efd for the events of `file` (with `args`, such as a
// threshold) in dir's cgroup.event_control (cgroup v1).
int register_event(const std::string& dir, std::string_view file, int efd, const std::string& args,
                   std::string& why) {
  unique_fd target(open(in(dir, file).c_str(), O_RDONLY | O_CLOEXEC));
  unique_fd control(open(in(dir, table::kV1EventControl).c_str(), O_WRONLY | O_CLOEXEC));
  if (!target || !control) {
    int err = errno;
    why = "cannot open " + in(dir, target ? table::kV1EventControl : file) + ": " + strerror(err);
    return -err;
  }
  std::string line = std::to_string(efd) + " " + std::to_string(target.get());
  if (!args.empty()) line += " " + args;
  if (write(control.get(), line.data(), line.size()) < 0) {
    int err = errno;
    why = "cannot register for " + in(dir, file) + " in " + std::string(table::kV1EventControl) +
          ": " + strerror(err);
    return -err;
  }
  return 0;  // the registration holds the eventfd, not these files
}

std::string key_names(uint32_t keys) {
  std::string out;
  for (size_t i = 0; i < frame::kMemoryEventKeys; i++) {
    if (!(keys & (1u << i))) continue;
    if (!out.empty()) out += ", ";
    out += frame::kMemoryEventNames[i];
  }
  return out;
}

}  // namespace

uint32_t parse_v2(std::string_view text, Counts& ret) {
  uint32_t found = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    uint64_t v;
    if (!parse_u64(line.substr(sp + 1), v) || v > INT64_MAX) continue;
    for (size_t i = 0; i < frame::kMemoryEventKeys; i++) {
      if (line.substr(0, sp) == frame::kMemoryEventNames[i]) {
        ret.v[i] = static_cast<int64_t>(v);
        found |= 1u << i;
      }
    }
  }
  return found;
}

uint64_t v1_threshold(uint64_t limit) {
  // An unlimited v1 group shows a limit near 2^63 (rounded to pages).
  if (limit == 0 || limit >= (uint64_t{1} << 62)) return 0;
  // One charge batch (64 pages) below, at least 256 KiB, at most 1/64 of
  // the limit's distance: close enough that only a child at its limit is
  // above it.
  uint64_t margin = std::clamp<uint64_t>(limit / 64, 256 << 10, 1 << 20);
  return limit > margin ? limit - margin : limit / 2;
}

int Watch::open(const MemoryEventsSpec& spec, const std::string& v2_leaf,
                const std::vector<std::string>& v1_leaves, std::string& why) {
  close();
  if (!v2_leaf.empty() && exists(in(v2_leaf, kV2Events))) {
    dir_ = v2_leaf;
    v1_ = false;
    notify_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!notify_) {
      int err = errno;
      why = std::string("memory_events: cannot make an inotify instance: ") + strerror(err);
      return -err;
    }
    if (inotify_add_watch(notify_.get(), in(dir_, kV2Events).c_str(), IN_MODIFY) < 0) {
      int err = errno;
      why = "memory_events: cannot watch " + in(dir_, kV2Events) + ": " + strerror(err);
      notify_.reset();
      return -err;
    }
    keys_ = spec.keys;
    return 0;
  }
  for (const std::string& d : v1_leaves) {
    if (!exists(in(d, kOomControl))) continue;
    dir_ = d;
    v1_ = true;
    if (uint32_t missing = spec.keys & ~kV1Keys; missing && !spec.all) {
      why = "memory_events: " + key_names(missing) +
            " has no cgroup v1 equivalent (this host's memory controller is on v1)";
      return -EOPNOTSUPP;
    }
    notify_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    usage_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!notify_ || !usage_) {
      int err = errno;
      why = std::string("memory_events: cannot make an eventfd: ") + strerror(err);
      close();
      return -err;
    }
    if (int rc = register_event(dir_, kOomControl, notify_.get(), {}, why); rc < 0) {
      close();
      return rc;
    }
    std::string text;
    uint64_t limit = 0;
    if (read_file(in(dir_, kLimit), text) == 0 && parse_u64(text, limit))
      threshold_ = v1_threshold(limit);
    if (threshold_ == 0) {
      usage_.reset();  // no limit: failcnt stays 0, nothing to cross
    } else if (int rc = register_event(dir_, kUsage, usage_.get(), std::to_string(threshold_), why);
               rc < 0) {
      close();
      return rc;
    }
    keys_ = spec.keys & kV1Keys;
    return 0;
  }
  why = "memory_events: the child has no memory cgroup (give the cgroup option a memory key)";
  return -ENOENT;
}

std::vector<int> Watch::fds() const {
  std::vector<int> out;
  for (const unique_fd* fd : {&notify_, &usage_})
    if (*fd) out.push_back(fd->get());
  return out;
}

void Watch::move_above(int below) {
  corral::move_above(notify_, below);
  corral::move_above(usage_, below);
}

void Watch::drain() {
  if (!notify_) return;
  if (v1_) {
    uint64_t n;
    if (read(notify_.get(), &n, sizeof n) == static_cast<ssize_t>(sizeof n))
      ooms_ += static_cast<int64_t>(n);
    if (usage_) (void)!read(usage_.get(), &n, sizeof n);
    return;
  }
  // inotify events say only "modified": the file itself has the counts.
  alignas(inotify_event) char buf[4096];
  while (read(notify_.get(), buf, sizeof buf) > 0) {
  }
}

void Watch::woke(Clock::time_point now) {
  drain();
  // Reads, not only frames, are paced: a subscription to oom_kill alone
  // must not read the file at every change of max.
  Clock::time_point at = last_read_ ? std::max(now, *last_read_ + kInterval) : now;
  if (!due_ || at < *due_) due_ = at;
}

int Watch::read_counts(Counts& ret) {
  ret = Counts{};
  std::string text;
  if (!v1_) {
    if (int rc = read_file(in(dir_, kV2Events), text); rc < 0) return rc;
    parse_v2(text, ret);
    return 0;
  }
  // The table turns the v1 files into memory.events' text (max, and
  // oom_kill where the kernel counts it, 4.13 on); oom is ours to count.
  static const table::Entry& entry = *table::find(kV2Events);
  table::Files files;
  for (size_t i = 0; i < files.size(); i++)
    if (!entry.v1[i].empty() && read_file(in(dir_, entry.v1[i]), text) == 0) files[i] = text;
  std::string why;
  if (table::from_v1(entry, files, text, why) == 0) parse_v2(text, ret);
  ret.v[3] = ooms_;
  return 0;
}

bool Watch::poll(Clock::time_point now, frame::EventsFrame& ret) {
  due_.reset();
  if (!keys_) return false;
  last_read_ = now;
  drain();
  Counts c;
  if (read_counts(c) < 0) return false;
  bool changed = !c.same(sent_, keys_);
  bool hot = changed;
  if (v1_ && threshold_ && !hot) {
    std::string text;
    uint64_t usage;
    hot = read_file(in(dir_, kUsage), text) == 0 && parse_u64(text, usage) && usage >= threshold_;
  }
  if (hot) due_ = now + kInterval;
  if (!changed) return false;
  ret.keys = keys_;
  for (size_t i = 0; i < frame::kMemoryEventKeys; i++)
    ret.counts[i] = (keys_ & (1u << i)) ? c.v[i] : 0;
  return true;
}

void Watch::sent(const frame::EventsFrame& f) {
  for (size_t i = 0; i < frame::kMemoryEventKeys; i++) sent_.v[i] = f.counts[i];
}

bool Watch::last(frame::EventsFrame& ret) {
  bool changed = poll(Clock::now(), ret);
  due_.reset();
  return changed;
}

void Watch::close() {
  keys_ = 0;
  notify_.reset();
  usage_.reset();
  due_.reset();
}

}  // namespace corral::spawner::events
