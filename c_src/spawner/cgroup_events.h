// Memory events of a running child: its memory leaf's memory.events counts
// (cgroup v2), or their v1 equivalents, watched from the spawner's epoll set
// and reported to the owner as Events frames.
//
// v2: inotify IN_MODIFY on the leaf's memory.events (the kernel raises it
// whenever a count changes); the counts are that file's.
// v1: cgroup.event_control eventfds, one for OOM notifications
// (memory.oom_control) and one for a memory.usage_in_bytes threshold just
// below the limit; the counts are reported in v2 names: `max` is
// memory.failcnt, `oom` the OOM notifications received, `oom_kill`
// memory.oom_control's oom_kill line. v1 has no `low`, `high` or
// `oom_group_kill`. The v1 names, and the conversion of failcnt and
// oom_control to memory.events' text, are common/cgroup_table.h's.
//
// Counts are cumulative, so they are coalesced: a wake-up only schedules a
// read, at most one read per kInterval, and a read sends the latest
// snapshot when it differs from the last one sent. Functions return 0 or
// -errno.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fd.h"
#include "frame.h"
#include "options.h"

namespace corral::spawner::events {

using Clock = std::chrono::steady_clock;

// The shortest time between two reads (and so two Events frames) of one
// child: a child thrashing at its limit changes its counts thousands of
// times a second.
constexpr auto kInterval = std::chrono::milliseconds(100);

// The keys a v1 memory hierarchy can report.
constexpr uint32_t kV1Keys = (1u << 2) | (1u << 3) | (1u << 4);  // max, oom, oom_kill

struct Counts {
  int64_t v[frame::kMemoryEventKeys] = {};
  bool same(const Counts& o, uint32_t keys) const {
    for (size_t i = 0; i < frame::kMemoryEventKeys; i++)
      if ((keys & (1u << i)) && v[i] != o.v[i]) return false;
    return true;
  }
};

// memory.events text ("low 0\nhigh 3\n..."): each known key's count into
// ret; other lines are ignored. The keys found, as bits.
uint32_t parse_v2(std::string_view text, Counts& ret);

// The usage_in_bytes threshold for a v1 limit: just below it, since usage
// never exceeds the limit and charges come in batches that may never land
// on it exactly. 0 for no limit (nothing to cross).
uint64_t v1_threshold(uint64_t limit);

// One child's watch.
class Watch {
 public:
  // Finds the memory leaf among the child's groups: the v2 leaf when it has
  // memory.events, else the v1 leaf that has memory.oom_control; and arms
  // the notifications. spec.all takes the keys that hierarchy has; named
  // keys it lacks are an error (-EOPNOTSUPP) with why naming them, as is a
  // child without a memory leaf (-ENOENT).
  int open(const MemoryEventsSpec& spec, const std::string& v2_leaf,
           const std::vector<std::string>& v1_leaves, std::string& why);

  explicit operator bool() const { return keys_ != 0; }
  // The keys reported (a subset of frame::kMemoryEventAll).
  uint32_t keys() const { return keys_; }
  // The fds to watch for readiness (one on v2, two on v1).
  std::vector<int> fds() const;
  // Moves the fds above `below` (fd.h's move_above): they live as long as
  // the child runs. Call before they are added to an epoll set.
  void move_above(int below);

  // One of fds() is readable: drains it and schedules a read no sooner
  // than kInterval after the last read.
  void woke(Clock::time_point now);
  // When the next read is due, if one is.
  std::optional<Clock::time_point> due() const { return due_; }

  // A due read: the current counts into ret. True when they differ from
  // the last sent, and the caller should send them (then call sent()). A
  // read that finds the counts moving (or, on v1, usage above the
  // threshold, where no further crossing will wake us) schedules another
  // read kInterval later.
  bool poll(Clock::time_point now, frame::EventsFrame& ret);
  // The frame from poll() went out.
  void sent(const frame::EventsFrame& f);
  // It could not go out yet (EAGAIN): try again kInterval later.
  void retry(Clock::time_point now) { due_ = now + kInterval; }

  // The child is finished: the last counts, true when they differ from the
  // last sent. Nothing is scheduled after it.
  bool last(frame::EventsFrame& ret);

  // Closes the fds (the v1 registrations go with their eventfds); the
  // watch is empty after.
  void close();

 private:
  int read_counts(Counts& ret);
  void drain();

  uint32_t keys_ = 0;
  bool v1_ = false;
  std::string dir_;   // the memory leaf
  unique_fd notify_;  // v2: inotify; v1: the OOM eventfd
  unique_fd usage_;   // v1: the threshold eventfd
  uint64_t threshold_ = 0;
  int64_t ooms_ = 0;  // v1: OOM notifications so far
  Counts sent_;
  std::optional<Clock::time_point> last_read_, due_;
};

}  // namespace corral::spawner::events
