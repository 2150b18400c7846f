// libFuzzer target: frame decoding (common/frame.h), both corral::frame::decode
// on arbitrary bytes and recv_frame on arbitrary SOCK_SEQPACKET messages.
//
// Input: byte 0 = how many descriptors to attach (modulo 6, so 0..5, past
// the kMaxFds + 1 the receiver makes room for), the rest = the message.
//
// Checked: decode answers 0 or -EBADMSG, refuses every bad header, and
// what it accepts encodes back to the same bytes; recv_frame agrees with
// decode, hands over exactly the descriptors sent when it accepts, and
// closes them all when it does not, so no iteration leaves one behind.
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <vector>

#include "frame.h"
#include "guarded.h"

namespace frame = corral::frame;

namespace {

struct Sockets {
  int tx = -1, rx = -1;
  int devnull = -1;

  Sockets() {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) != 0) abort();
    tx = sp[0];
    rx = sp[1];
    // Room for the largest input (libFuzzer's -max_len) in one message.
    int sz = 1 << 20;
    setsockopt(tx, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
};

bool open_fd(int fd) { return fcntl(fd, F_GETFD) >= 0; }

// The lowest free descriptor numbers: where received descriptors land
// (libFuzzer itself opens and closes files between runs).
std::vector<int> free_fds(size_t n) {
  std::vector<int> out;
  for (int fd = 0; out.size() < n; fd++)
    if (!open_fd(fd)) out.push_back(fd);
  return out;
}

// Sends msg with n duplicates of /dev/null as SCM_RIGHTS.
void send_raw(const Sockets& s, std::string_view msg, size_t n) {
  int fds[frame::kMaxSendFds];
  for (size_t i = 0; i < n; i++) fds[i] = s.devnull;
  int rc = frame::send_bytes(s.tx, msg, fds, n);
  FUZZ_CHECK(rc == 0, "sendmsg of %zu bytes: %s", msg.size(), std::strerror(-rc));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static corral::fuzz::Guarded guarded;
  static Sockets socks;
  if (size == 0) return 0;
  size_t nfds = data[0] % 6;
  std::string_view msg = guarded.place(data + 1, size - 1);

  frame::Frame f;
  int rc = frame::decode(msg, f);
  FUZZ_CHECK(rc == 0 || rc == -EBADMSG, "decode returned %d", rc);
  frame::Header h{};
  if (msg.size() >= sizeof h) std::memcpy(&h, msg.data(), sizeof h);
  bool bad_header = msg.size() < sizeof h || msg.size() > frame::kMaxFrame ||
                    !frame::known_type(h.type) || h.flags != 0;
  if (bad_header)
    FUZZ_CHECK(rc == -EBADMSG, "decode accepted a bad header (%zu bytes)", msg.size());
  // Accepted means canonical: the frame encodes back to the same bytes.
  if (rc == 0) {
    std::string back;
    frame::encode(f, back);
    FUZZ_CHECK(back == msg, "encode(decode(x)) != x");
  }

  std::vector<int> unused = free_fds(8);
  send_raw(socks, msg, nfds);
  frame::Frame g;
  std::vector<int> fds = {-7};  // recv_frame appends: this one must stay
  int r = frame::recv_frame(socks.rx, g, fds);
  FUZZ_CHECK(!fds.empty() && fds[0] == -7, "recv_frame changed the descriptors it was given");
  if (msg.empty() && nfds == 0) {
    // A zero-length message from a live peer is malformed, not EOF.
    FUZZ_CHECK(r == -EBADMSG, "empty message: %d", r);
  } else if (rc == 0 && nfds <= frame::kMaxFds + 1) {
    FUZZ_CHECK(r == 1, "well-formed frame received as %d", r);
    std::string got;
    frame::encode(g, got);
    FUZZ_CHECK(got == msg, "recv_frame and decode disagree");
    FUZZ_CHECK(fds.size() == 1 + nfds, "sent %zu descriptors, got %zu", nfds, fds.size() - 1);
    for (size_t i = 1; i < fds.size(); i++) {
      FUZZ_CHECK((fcntl(fds[i], F_GETFD) & FD_CLOEXEC) != 0, "received fd without CLOEXEC");
      close(fds[i]);
    }
  } else {
    FUZZ_CHECK(r == -EBADMSG, "malformed message (%zu bytes, %zu fds) received as %d", msg.size(),
               nfds, r);
    FUZZ_CHECK(fds.size() == 1, "descriptors handed over with an error");
  }
  for (int fd : unused) FUZZ_CHECK(!open_fd(fd), "fd %d left open", fd);
  return 0;
}
