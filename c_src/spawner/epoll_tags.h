// epoll_event.data.u64 values of the spawner's epoll set.
#pragma once

#include <cstdint>

namespace corral::spawner {

// The two fixed fds; control sockets use the pid, exec-status pipes the pid
// with kLaunchBit, pidfds the pid with kPidfdBit, memory events fds
// (cgroup_events.h) the pid with kEventsBit.
constexpr uint64_t kRequestTag = UINT64_MAX;
constexpr uint64_t kSignalTag = UINT64_MAX - 1;
constexpr uint64_t kLaunchBit = uint64_t{1} << 32;
constexpr uint64_t kPidfdBit = uint64_t{1} << 33;
constexpr uint64_t kEventsBit = uint64_t{1} << 34;

}  // namespace corral::spawner
