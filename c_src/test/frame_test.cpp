// Frame encoding, decoding and fd passing (c_src/common/frame.h).
#include "frame.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>

using namespace corral::frame;

namespace {

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fd)); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) close(f);
  }
};

TEST(Frame, EncodeDecodeRoundTrip) {
  Frame f;
  f.type = Type::Error;
  f.a = -2;
  f.b = 1LL << 40;
  f.payload = std::string("ex\0ec", 5);
  std::string buf;
  encode(f, buf);
  ASSERT_EQ(sizeof(Header) + 5, buf.size());
  Frame g;
  ASSERT_EQ(0, decode(buf, g));
  EXPECT_EQ(Type::Error, g.type);
  EXPECT_EQ(-2, g.a);
  EXPECT_EQ(1LL << 40, g.b);
  EXPECT_EQ(f.payload, g.payload);
}

TEST(Frame, DecodeRejectsShortUnknownAndFlagged) {
  Frame g;
  std::string buf;
  Frame f;
  f.type = Type::Exit;
  encode(f, buf);
  EXPECT_EQ(-EBADMSG, decode(std::string_view(buf).substr(0, sizeof(Header) - 1), g));
  std::string unknown = buf;
  uint32_t t = 999;
  std::memcpy(unknown.data(), &t, 4);
  EXPECT_EQ(-EBADMSG, decode(unknown, g));
  std::string flagged = buf;
  uint32_t flags = 1;
  std::memcpy(flagged.data() + 4, &flags, 4);
  EXPECT_EQ(-EBADMSG, decode(flagged, g));
  EXPECT_EQ(-EBADMSG, decode(std::string(kMaxFrame + 1, '\0'), g));
}

TEST(Frame, DecodeSurvivesRandomBytes) {
  std::mt19937 rng(42);
  int accepted = 0;
  for (int i = 0; i < 2000; i++) {
    std::string buf(rng() % 64, '\0');
    for (char& c : buf) c = static_cast<char>(rng());
    Frame g;
    int rc = decode(buf, g);
    ASSERT_TRUE(rc == 0 || rc == -EBADMSG);
    if (rc == 0) {
      accepted++;
      EXPECT_TRUE(known_type(static_cast<uint32_t>(g.type)));
    }
  }
  // Random headers almost never name a known type with zero flags.
  EXPECT_LT(accepted, 20);
}

TEST(Frame, SendRecvKeepsBoundariesAndPassesFds) {
  SocketPair sp;
  int pipefd[2];
  ASSERT_EQ(0, pipe(pipefd));
  Frame a;
  a.type = Type::Fds;
  a.a = 1234;
  a.b = kFdStdout;
  ASSERT_EQ(0, send_frame(sp.fd[0], a, &pipefd[0], 1));
  Frame b;
  b.type = Type::Exit;
  b.a = 7;
  ASSERT_EQ(0, send_frame(sp.fd[0], b, nullptr, 0));
  close(pipefd[0]);

  Frame got;
  std::vector<int> fds;
  ASSERT_EQ(1, recv_frame(sp.fd[1], got, fds));
  EXPECT_EQ(Type::Fds, got.type);
  EXPECT_EQ(1234, got.a);
  ASSERT_EQ(1u, fds.size());
  EXPECT_EQ(FD_CLOEXEC, fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  // The passed fd is the pipe's read end: what we write arrives there.
  ASSERT_EQ(3, write(pipefd[1], "abc", 3));
  char buf[4] = {};
  ASSERT_EQ(3, read(fds[0], buf, 3));
  EXPECT_STREQ("abc", buf);
  close(fds[0]);
  close(pipefd[1]);

  fds.clear();
  ASSERT_EQ(1, recv_frame(sp.fd[1], got, fds));
  EXPECT_EQ(Type::Exit, got.type);
  EXPECT_EQ(7, got.a);
  EXPECT_TRUE(fds.empty());

  close(sp.fd[0]);
  sp.fd[0] = -1;
  EXPECT_EQ(0, recv_frame(sp.fd[1], got, fds));
}

TEST(Frame, RecvRejectsGarbageAndClosesItsFds) {
  SocketPair sp;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(devnull, 0);
  // A raw message that is too short to be a frame, carrying an fd.
  char junk[3] = {1, 2, 3};
  iovec iov{junk, sizeof junk};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &devnull, sizeof devnull);
  ASSERT_EQ(3, sendmsg(sp.fd[0], &msg, 0));
  close(devnull);

  int before = open("/dev/null", O_RDONLY);  // the lowest free fd now
  close(before);
  Frame got;
  std::vector<int> fds;
  EXPECT_EQ(-EBADMSG, recv_frame(sp.fd[1], got, fds));
  EXPECT_TRUE(fds.empty());
  // The received fd was closed again: the lowest free fd is unchanged.
  int after = open("/dev/null", O_RDONLY);
  EXPECT_EQ(before, after);
  close(after);
}

TEST(Frame, SendRefusesTooManyFdsAndDeadPeer) {
  Frame f;
  f.type = Type::Signal;
  int fds[4] = {0, 1, 2, 0};
  SocketPair sp;
  EXPECT_EQ(-EINVAL, send_frame(sp.fd[0], f, fds, 4));
  close(sp.fd[1]);
  sp.fd[1] = -1;
  EXPECT_EQ(-EPIPE, send_frame(sp.fd[0], f, nullptr, 0));
}

}  // namespace
