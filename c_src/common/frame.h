// Frames exchanged between the driver (in the VM) and the spawner.
//
// Both sockets are AF_UNIX SOCK_SEQPACKET, so one sendmsg is one frame and
// frames never merge. On the wire a frame is a fixed Header (type, flags,
// two 64-bit fields a and b) followed by an optional payload; file
// descriptors travel beside it as SCM_RIGHTS. In code every type has its
// own struct with named fields; this is how each maps onto the wire:
//
//   request socket (one per VM), driver -> spawner:
//     SpawnFrame   b = term.size() when cwd is given, else 0;
//                  payload = term (term_to_binary of the option map) + cwd
//                  (the VM's working directory); fds = [ctl]
//   control socket (one per child), spawner -> driver:
//     FdsFrame     a = os_pid, b = pipes (kFd* bits: which pipes follow),
//                  payload = leaf (the child's leaf cgroup directory, or
//                  empty when the host gives the spawner no cgroup v2 tree),
//                  then for each cgroup v1 leaf of the child a NUL byte and
//                  its directory (v1_leaves; none are empty);
//                  fds = the parent ends, in the order stdin, stdout, stderr;
//                  sent once the child has exec'd, or, for a request with a
//                  report_delay, when it exits or the delay ends; always
//                  the child's first frame
//     ExitFrame    a = wait_status (raw, of the child), b = kExitOomKill
//                  when the OOM killer killed in the child's leaves, else 0;
//                  sent once the whole process group is gone and the leaf
//                  cgroup is unpopulated
//     ErrorFrame   a = err (errno), payload = stage, then, when there is a
//                  detail (a sentence naming what failed), a NUL byte and
//                  the detail; the child never ran
//     EventsFrame  a = keys (kMemoryEvent* bits, not 0), payload = one
//                  int64 count (>= 0, native order) per key bit, lowest bit
//                  first: the child's memory.events counts, cumulative;
//                  only between Fds and Exit
//   control socket, driver -> spawner:
//     SignalFrame  a = signo, sent to the child's process group
//     StopFrame    escalate: stop signal, wait kill_timeout, then SIGKILL
//   Fields a type does not use are 0 on the wire (and the payload empty);
//   decode refuses a frame where they are not, or where a used field is
//   out of its range.
//
//   EOF on a control socket means "the owner is gone": the spawner
//   escalates. EOF on the request socket means "the VM is gone": the
//   spawner SIGKILLs every group and exits.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace corral::frame {

enum class Type : uint32_t {
  Spawn = 1,
  Fds = 16,
  Exit = 17,
  Error = 18,
  Events = 19,
  Signal = 32,
  Stop = 33,
};

inline constexpr uint32_t kFdStdin = 1;
inline constexpr uint32_t kFdStdout = 2;
inline constexpr uint32_t kFdStderr = 4;

// Largest frame either side accepts (header + payload).
inline constexpr size_t kMaxFrame = 1 << 20;
// Most fds one frame carries.
inline constexpr size_t kMaxFds = 3;

// The wire header.
struct Header {
  uint32_t type;
  uint32_t flags;  // reserved, 0
  int64_t a;
  int64_t b;
};
static_assert(sizeof(Header) == 24);

struct SpawnFrame {
  std::string term;  // term_to_binary of the option map
  std::string cwd;   // the VM's working directory; may be empty
};

struct FdsFrame {
  pid_t os_pid = 0;
  uint32_t pipes = 0;                  // kFd* bits, in the order the fds follow
  std::string leaf;                    // leaf cgroup directory, or empty
  std::vector<std::string> v1_leaves;  // the child's cgroup v1 leaves
};

inline constexpr int64_t kExitOomKill = 1;

struct ExitFrame {
  int wait_status = 0;
  bool oom_kill = false;  // the OOM killer struck in the child's leaves
};

struct ErrorFrame {
  int err = 0;         // errno
  std::string stage;   // where the spawn failed: "exec", "chdir", ...
  std::string detail;  // what failed, for a person ("cgroup": the group and fix)
};

// The memory.events keys, by bit: kMemoryEventNames[i] is bit 1 << i.
inline constexpr size_t kMemoryEventKeys = 6;
inline constexpr const char* kMemoryEventNames[kMemoryEventKeys] = {
    "low", "high", "max", "oom", "oom_kill", "oom_group_kill"};
inline constexpr uint32_t kMemoryEventAll = (1u << kMemoryEventKeys) - 1;

struct EventsFrame {
  uint32_t keys = 0;                      // which counts are meaningful
  int64_t counts[kMemoryEventKeys] = {};  // by key index; 0 where not in keys
};

struct SignalFrame {
  int signo = 0;
};

struct StopFrame {};

using Frame =
    std::variant<SpawnFrame, FdsFrame, ExitFrame, ErrorFrame, EventsFrame, SignalFrame, StopFrame>;

Type type_of(const Frame& f);

// Serialises f into out (header then payload).
void encode(const Frame& f, std::string& out);

// Parses buf. Returns 0 and fills f, or -EBADMSG when buf is too short or
// too long, names an unknown type, or breaks that type's field rules.
int decode(std::string_view buf, Frame& f);

bool known_type(uint32_t t);

// Sends one frame with up to kMaxFds descriptors. Returns 0 or -errno.
// Uses MSG_NOSIGNAL, so a dead peer gives -EPIPE, never SIGPIPE.
int send_frame(int sock, const Frame& f, const int* fds = nullptr, size_t nfds = 0);

// Most descriptors send_bytes attaches.
inline constexpr size_t kMaxSendFds = 8;

// Sends bytes as one message with up to kMaxSendFds descriptors, unchecked:
// send_frame's transport, and the fuzz harnesses' way to send what no
// valid frame is. Returns 0 or -errno (-EINVAL above kMaxSendFds); retries
// EINTR; MSG_NOSIGNAL, as send_frame.
int send_bytes(int sock, std::string_view bytes, const int* fds, size_t nfds);

// Receives one frame. Returns 1 on a frame, 0 on EOF, -errno on error
// (-EAGAIN on a non-blocking socket with nothing to read, -EBADMSG on a
// malformed or truncated frame). Received descriptors are CLOEXEC and are
// appended to fds; on any error they are closed before returning.
int recv_frame(int sock, Frame& f, std::vector<int>& fds);

}  // namespace corral::frame
