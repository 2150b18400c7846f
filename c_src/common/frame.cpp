// Frame encoding and fd passing over SOCK_SEQPACKET (see frame.h).
#include "frame.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace corral::frame {

bool known_type(uint32_t t) {
  switch (static_cast<Type>(t)) {
    case Type::Spawn:
    case Type::Fds:
    case Type::Exit:
    case Type::Error:
    case Type::Signal:
    case Type::Stop:
      return true;
  }
  return false;
}

void encode(const Frame& f, std::string& out) {
  Header h{static_cast<uint32_t>(f.type), 0, f.a, f.b};
  out.resize(sizeof h + f.payload.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!f.payload.empty()) std::memcpy(out.data() + sizeof h, f.payload.data(), f.payload.size());
}

int decode(std::string_view buf, Frame& f) {
  if (buf.size() < sizeof(Header) || buf.size() > kMaxFrame) return -EBADMSG;
  Header h;
  std::memcpy(&h, buf.data(), sizeof h);
  if (!known_type(h.type) || h.flags != 0) return -EBADMSG;
  f.type = static_cast<Type>(h.type);
  f.a = h.a;
  f.b = h.b;
  f.payload.assign(buf.substr(sizeof h));
  return 0;
}

int send_frame(int sock, const Frame& f, const int* fds, size_t nfds) {
  if (nfds > kMaxFds) return -EINVAL;
  std::string buf;
  encode(f, buf);
  if (buf.size() > kMaxFrame) return -EMSGSIZE;
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)];
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
  if (n == 0 && fds.size() == first) return 0;
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return fail(-EBADMSG);
  if (decode(std::string_view(buf.get(), static_cast<size_t>(n)), f) < 0) return fail(-EBADMSG);
  return 1;
}

}  // namespace corral::frame
