// Frames exchanged between the driver (in the VM) and the spawner.
//
// Both sockets are AF_UNIX SOCK_SEQPACKET, so one sendmsg is one frame and
// frames never merge. A frame is a fixed Header followed by an optional
// payload; file descriptors travel beside it as SCM_RIGHTS.
//
//   request socket (one per VM), driver -> spawner:
//     Spawn   payload = term_to_binary(option map), then the VM's working
//             directory when b > 0: b = the term's length; fds = [ctl]
//   control socket (one per child), spawner -> driver:
//     Fds     a = os pid, b = which pipes follow (kFd* bits),
//             fds = the parent ends, in the order stdin, stdout, stderr,
//             payload = the child's leaf cgroup directory, or empty when
//             the host gives the spawner no cgroup v2 tree
//     Exit    a = raw wait status of the child; sent once the whole
//             process group is gone and the leaf cgroup is unpopulated
//     Error   a = errno, payload = stage name; the child never ran
//   control socket, driver -> spawner:
//     Signal  a = signal number, sent to the child's process group
//     Stop    escalate: stop signal, wait kill_timeout, then SIGKILL
//   EOF on a control socket means "the owner is gone": the spawner
//   escalates. EOF on the request socket means "the VM is gone": the
//   spawner SIGKILLs every group and exits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace corral::frame {

enum class Type : uint32_t {
  Spawn = 1,
  Fds = 16,
  Exit = 17,
  Error = 18,
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

struct Header {
  uint32_t type;
  uint32_t flags;  // reserved, 0
  int64_t a;
  int64_t b;
};
static_assert(sizeof(Header) == 24);

struct Frame {
  Type type{};
  int64_t a = 0;
  int64_t b = 0;
  std::string payload;
};

// Serialises f into out (header then payload).
void encode(const Frame& f, std::string& out);

// Parses buf. Returns 0 and fills f, or -EBADMSG when buf is too short,
// too long or names an unknown type.
int decode(std::string_view buf, Frame& f);

bool known_type(uint32_t t);

// Sends one frame with up to kMaxFds descriptors. Returns 0 or -errno.
// Uses MSG_NOSIGNAL, so a dead peer gives -EPIPE, never SIGPIPE.
int send_frame(int sock, const Frame& f, const int* fds, size_t nfds);

// Receives one frame. Returns 1 on a frame, 0 on EOF, -errno on error
// (-EAGAIN on a non-blocking socket with nothing to read, -EBADMSG on a
// malformed or truncated frame). Received descriptors are CLOEXEC and are
// appended to fds; on any error they are closed before returning.
int recv_frame(int sock, Frame& f, std::vector<int>& fds);

}  // namespace corral::frame
