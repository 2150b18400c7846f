// Frame encoding and fd passing over SOCK_SEQPACKET (see frame.h).
#include "frame.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>

namespace corral::frame {

namespace {

bool fits_int(int64_t v) { return v >= INT_MIN && v <= INT_MAX; }

// Each type's fields onto the wire (h.a, h.b, the payload after the header
// in out) and back. A get returns false when the frame breaks the type's
// rules (see frame.h).
void put(const SpawnFrame& x, Header& h, std::string& out) {
  h.b = x.cwd.empty() ? 0 : static_cast<int64_t>(x.term.size());
  out += x.term;
  out += x.cwd;
}
bool get(const Header& h, std::string_view p, SpawnFrame& x) {
  // b > 0 splits off a non-empty cwd; b equal to the payload size would
  // name an empty one, which encodes as b = 0, so it is refused: each
  // frame has one encoding.
  if (h.a != 0 || h.b < 0 || (h.b > 0 && static_cast<uint64_t>(h.b) >= p.size())) return false;
  size_t split = h.b > 0 ? static_cast<size_t>(h.b) : p.size();
  x.term.assign(p.substr(0, split));
  x.cwd.assign(p.substr(split));
  return true;
}

void put(const FdsFrame& x, Header& h, std::string& out) {
  h.a = x.os_pid;
  h.b = x.pipes;
  out += x.leaf;
  for (const std::string& l : x.v1_leaves) {
    out += '\0';
    out += l;
  }
}
bool get(const Header& h, std::string_view p, FdsFrame& x) {
  constexpr int64_t kAll = kFdStdin | kFdStdout | kFdStderr;
  if (h.a <= 0 || h.a > INT_MAX || h.b < 0 || (h.b & ~kAll) != 0) return false;
  x.os_pid = static_cast<pid_t>(h.a);
  x.pipes = static_cast<uint32_t>(h.b);
  size_t nul = p.find('\0');
  x.leaf.assign(p.substr(0, nul));
  x.v1_leaves.clear();
  while (nul != std::string_view::npos) {
    p.remove_prefix(nul + 1);
    nul = p.find('\0');
    std::string_view l = p.substr(0, nul);
    if (l.empty()) return false;  // one encoding: no empty v1 leaf
    x.v1_leaves.emplace_back(l);
  }
  return true;
}

void put(const ExitFrame& x, Header& h, std::string&) {
  h.a = x.wait_status;
  h.b = x.oom_kill ? kExitOomKill : 0;
}
bool get(const Header& h, std::string_view p, ExitFrame& x) {
  if (!fits_int(h.a) || (h.b != 0 && h.b != kExitOomKill) || !p.empty()) return false;
  x.wait_status = static_cast<int>(h.a);
  x.oom_kill = h.b == kExitOomKill;
  return true;
}

void put(const ErrorFrame& x, Header& h, std::string& out) {
  h.a = x.err;
  out += x.stage;
  if (!x.detail.empty()) {
    out += '\0';
    out += x.detail;
  }
}
bool get(const Header& h, std::string_view p, ErrorFrame& x) {
  if (!fits_int(h.a) || h.b != 0) return false;
  x.err = static_cast<int>(h.a);
  size_t nul = p.find('\0');
  x.stage.assign(p.substr(0, nul));
  x.detail.clear();
  if (nul != std::string_view::npos) {
    x.detail.assign(p.substr(nul + 1));
    // One encoding: a NUL only before a non-empty detail, and only one.
    if (x.detail.empty() || x.detail.find('\0') != std::string::npos) return false;
  }
  return true;
}

void put(const EventsFrame& x, Header& h, std::string& out) {
  h.a = x.keys;
  for (size_t i = 0; i < kMemoryEventKeys; i++) {
    if (!(x.keys & (1u << i))) continue;
    char b[sizeof(int64_t)];
    std::memcpy(b, &x.counts[i], sizeof b);
    out.append(b, sizeof b);
  }
}
bool get(const Header& h, std::string_view p, EventsFrame& x) {
  if (h.a <= 0 || h.a > kMemoryEventAll || h.b != 0) return false;
  x.keys = static_cast<uint32_t>(h.a);
  if (p.size() != sizeof(int64_t) * static_cast<size_t>(__builtin_popcount(x.keys))) return false;
  for (size_t i = 0; i < kMemoryEventKeys; i++) {
    x.counts[i] = 0;
    if (!(x.keys & (1u << i))) continue;
    std::memcpy(&x.counts[i], p.data(), sizeof(int64_t));
    p.remove_prefix(sizeof(int64_t));
    if (x.counts[i] < 0) return false;
  }
  return true;
}

void put(const SignalFrame& x, Header& h, std::string&) { h.a = x.signo; }
bool get(const Header& h, std::string_view p, SignalFrame& x) {
  if (!fits_int(h.a) || h.b != 0 || !p.empty()) return false;
  x.signo = static_cast<int>(h.a);
  return true;
}

void put(const StopFrame&, Header&, std::string&) {}
bool get(const Header& h, std::string_view p, StopFrame&) {
  return h.a == 0 && h.b == 0 && p.empty();
}

template <typename T>
int decode_as(const Header& h, std::string_view payload, Frame& f) {
  T x;
  if (!get(h, payload, x)) return -EBADMSG;
  f = std::move(x);
  return 0;
}

}  // namespace

bool known_type(uint32_t t) {
  switch (static_cast<Type>(t)) {
    case Type::Spawn:
    case Type::Fds:
    case Type::Exit:
    case Type::Error:
    case Type::Events:
    case Type::Signal:
    case Type::Stop:
      return true;
  }
  return false;
}

Type type_of(const Frame& f) {
  struct {
    Type operator()(const SpawnFrame&) const { return Type::Spawn; }
    Type operator()(const FdsFrame&) const { return Type::Fds; }
    Type operator()(const ExitFrame&) const { return Type::Exit; }
    Type operator()(const ErrorFrame&) const { return Type::Error; }
    Type operator()(const EventsFrame&) const { return Type::Events; }
    Type operator()(const SignalFrame&) const { return Type::Signal; }
    Type operator()(const StopFrame&) const { return Type::Stop; }
  } visitor;
  return std::visit(visitor, f);
}

void encode(const Frame& f, std::string& out) {
  Header h{static_cast<uint32_t>(type_of(f)), 0, 0, 0};
  out.assign(sizeof h, '\0');
  std::visit([&](const auto& x) { put(x, h, out); }, f);
  std::memcpy(out.data(), &h, sizeof h);
}

int decode(std::string_view buf, Frame& f) {
  if (buf.size() < sizeof(Header) || buf.size() > kMaxFrame) return -EBADMSG;
  Header h;
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.flags != 0) return -EBADMSG;
  std::string_view payload = buf.substr(sizeof h);
  switch (static_cast<Type>(h.type)) {
    case Type::Spawn:
      return decode_as<SpawnFrame>(h, payload, f);
    case Type::Fds:
      return decode_as<FdsFrame>(h, payload, f);
    case Type::Exit:
      return decode_as<ExitFrame>(h, payload, f);
    case Type::Error:
      return decode_as<ErrorFrame>(h, payload, f);
    case Type::Events:
      return decode_as<EventsFrame>(h, payload, f);
    case Type::Signal:
      return decode_as<SignalFrame>(h, payload, f);
    case Type::Stop:
      return decode_as<StopFrame>(h, payload, f);
  }
  return -EBADMSG;
}

int send_bytes(int sock, std::string_view bytes, const int* fds, size_t nfds) {
  if (nfds > kMaxSendFds) return -EINVAL;
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxSendFds)];
  if (nfds > 0) {
    std::memset(ctrl, 0, sizeof ctrl);
    msg.msg_control = ctrl;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  for (;;) {
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

int send_frame(int sock, const Frame& f, const int* fds, size_t nfds) {
  if (nfds > kMaxFds) return -EINVAL;
  std::string buf;
  encode(f, buf);
  if (buf.size() > kMaxFrame) return -EMSGSIZE;
  return send_bytes(sock, buf, fds, nfds);
}

int recv_frame(int sock, Frame& f, std::vector<int>& fds) {
  // One uninitialised buffer per thread: frames are rare but may be large.
  thread_local std::unique_ptr<char[]> buf(new char[kMaxFrame + 1]);
  iovec iov{buf.get(), kMaxFrame + 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * (kMaxFds + 1))];
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  size_t first = fds.size();
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
  }
  auto fail = [&](int err) {
    for (size_t i = first; i < fds.size(); i++) close(fds[i]);
    fds.resize(first);
    return err;
  };
  // On SOCK_SEQPACKET a read of 0 is either the peer's close or an empty
  // message; only a hang-up is EOF, so that an empty message from a live
  // peer is a malformed frame and not "the VM is gone".
  if (n == 0 && fds.size() == first) {
    pollfd p{sock, POLLRDHUP, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP))) return 0;
    return -EBADMSG;
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return fail(-EBADMSG);
  if (decode(std::string_view(buf.get(), static_cast<size_t>(n)), f) < 0) return fail(-EBADMSG);
  return 1;
}

}  // namespace corral::frame
