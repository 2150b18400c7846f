// Frame encoding, decoding and fd passing (c_src/common/frame.h).
#include "frame.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <csignal>
#include <cstring>
#include <random>

#include "fd.h"

using namespace corral::frame;

namespace {

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fd)); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) close(f);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
};

// A raw frame, as the wire has it.
std::string raw(uint32_t type, int64_t a, int64_t b, std::string_view payload = {},
                uint32_t flags = 0) {
  Header h{type, flags, a, b};
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out += payload;
  return out;
}

template <typename T>
T round_trip(const T& x) {
  std::string buf;
  encode(Frame(x), buf);
  Frame g;
  EXPECT_EQ(0, decode(buf, g));
  EXPECT_TRUE(std::holds_alternative<T>(g)) << "type " << static_cast<unsigned>(type_of(g));
  return std::holds_alternative<T>(g) ? std::get<T>(g) : T{};
}

TEST(Frame, EveryTypeRoundTrips) {
  SpawnFrame s = round_trip(SpawnFrame{std::string("\x83t\0\0", 4), "/home/x"});
  EXPECT_EQ(std::string("\x83t\0\0", 4), s.term);
  EXPECT_EQ("/home/x", s.cwd);
  s = round_trip(SpawnFrame{"term", ""});
  EXPECT_EQ("term", s.term);
  EXPECT_EQ("", s.cwd);
  FdsFrame f = round_trip(FdsFrame{4321, kFdStdin | kFdStderr, "/sys/fs/cgroup/c1", {}});
  EXPECT_EQ(4321, f.os_pid);
  EXPECT_EQ(kFdStdin | kFdStderr, f.pipes);
  EXPECT_EQ("/sys/fs/cgroup/c1", f.leaf);
  EXPECT_TRUE(f.v1_leaves.empty());
  f = round_trip(FdsFrame{7, 0, "", {"/sys/fs/cgroup/memory/corral.1/x0", "/p/x1"}});
  EXPECT_EQ("", f.leaf);
  EXPECT_EQ((std::vector<std::string>{"/sys/fs/cgroup/memory/corral.1/x0", "/p/x1"}), f.v1_leaves);
  EXPECT_EQ(0x8b00, round_trip(ExitFrame{0x8b00}).wait_status);
  EXPECT_FALSE(round_trip(ExitFrame{0x8b00}).oom_kill);
  EXPECT_TRUE(round_trip(ExitFrame{9, true}).oom_kill);
  ErrorFrame e = round_trip(ErrorFrame{ENOENT, "exec", ""});
  EXPECT_EQ(ENOENT, e.err);
  EXPECT_EQ("exec", e.stage);
  EXPECT_EQ("", e.detail);
  e = round_trip(ErrorFrame{EOPNOTSUPP, "cgroup", "enable +memory in /a/cgroup.subtree_control"});
  EXPECT_EQ("cgroup", e.stage);
  EXPECT_EQ("enable +memory in /a/cgroup.subtree_control", e.detail);
  EventsFrame ev{};
  ev.keys = (1u << 2) | (1u << 4);  // max, oom_kill
  ev.counts[2] = 17;
  ev.counts[4] = 1;
  EventsFrame evr = round_trip(ev);
  EXPECT_EQ(ev.keys, evr.keys);
  EXPECT_EQ(17, evr.counts[2]);
  EXPECT_EQ(1, evr.counts[4]);
  EXPECT_EQ(0, evr.counts[0]);
  EXPECT_EQ(SIGTERM, round_trip(SignalFrame{SIGTERM}).signo);
  round_trip(StopFrame{});
}

// The fields land where the wire format (frame.h) puts them, so both sides
// of a mixed build agree.
TEST(Frame, WireLayoutIsTheDocumentedOne) {
  std::string buf;
  encode(FdsFrame{1234, kFdStdout, "/leaf", {}}, buf);
  EXPECT_EQ(raw(16, 1234, kFdStdout, "/leaf"), buf);
  encode(SpawnFrame{"TERM", "/cwd"}, buf);
  EXPECT_EQ(raw(1, 0, 4, "TERM/cwd"), buf);
  encode(SpawnFrame{"TERM", ""}, buf);
  EXPECT_EQ(raw(1, 0, 0, "TERM"), buf);
  encode(ExitFrame{9}, buf);
  EXPECT_EQ(raw(17, 9, 0), buf);
  encode(ErrorFrame{EACCES, "exec", ""}, buf);
  EXPECT_EQ(raw(18, EACCES, 0, "exec"), buf);
  encode(ErrorFrame{EACCES, "cgroup", "why"}, buf);
  EXPECT_EQ(raw(18, EACCES, 0, std::string("cgroup\0why", 10)), buf);
  encode(ExitFrame{9, true}, buf);
  EXPECT_EQ(raw(17, 9, kExitOomKill), buf);
  encode(FdsFrame{1234, 0, "/v2", {"/m", "/p"}}, buf);
  EXPECT_EQ(raw(16, 1234, 0, std::string("/v2\0/m\0/p", 9)), buf);
  EventsFrame ev{};
  ev.keys = 0b101;  // low, max: one int64 each, lowest bit first
  ev.counts[0] = 3;
  ev.counts[2] = 5;
  encode(ev, buf);
  int64_t counts[2] = {3, 5};
  EXPECT_EQ(raw(19, 0b101, 0, std::string_view(reinterpret_cast<char*>(counts), sizeof counts)),
            buf);
  encode(SignalFrame{SIGUSR1}, buf);
  EXPECT_EQ(raw(32, SIGUSR1, 0), buf);
  encode(StopFrame{}, buf);
  EXPECT_EQ(raw(33, 0, 0), buf);
}

TEST(Frame, DecodeRejectsShortUnknownFlaggedAndLong) {
  Frame g;
  std::string stop = raw(33, 0, 0);
  EXPECT_EQ(0, decode(stop, g));
  EXPECT_EQ(-EBADMSG, decode(std::string_view(stop).substr(0, sizeof(Header) - 1), g));
  EXPECT_EQ(-EBADMSG, decode(raw(999, 0, 0), g));
  EXPECT_EQ(-EBADMSG, decode(raw(33, 0, 0, {}, 1), g));
  EXPECT_EQ(-EBADMSG, decode(raw(18, EIO, 0, std::string(kMaxFrame, 'x')), g));
}

// Each type's rules: used fields in range, unused ones zero.
TEST(Frame, DecodeRejectsFieldsOutOfRange) {
  Frame g;
  const std::string bad[] = {
      raw(1, 1, 0, "term"),                         // Spawn: a unused
      raw(1, 0, 5, "term"),                         // Spawn: split past the payload
      raw(1, 0, -1, "term"),                        // Spawn: negative split
      raw(1, 0, 4, "term"),                         // Spawn: an empty cwd is b = 0
      raw(16, 0, kFdStdout),                        // Fds: no pid
      raw(16, int64_t{1} << 40, 0),                 // Fds: pid out of range
      raw(16, 12, 8),                               // Fds: unknown pipe bit
      raw(17, int64_t{1} << 40, 0),                 // Exit: status out of range
      raw(17, 0, 2),                                // Exit: b is 0 or kExitOomKill
      raw(16, 12, 0, std::string("/v2\0", 4)),      // Fds: an empty v1 leaf
      raw(18, EIO, 0, std::string("cgroup\0", 7)),  // Error: an empty detail
      raw(18, EIO, 0, std::string("s\0a\0b", 5)),   // Error: two NULs
      raw(17, 0, 0, "x"),                           // Exit: no payload
      raw(18, int64_t{INT_MAX} + 1, 0),             // Error: errno out of range
      raw(32, int64_t{INT_MIN} - 1, 0),             // Signal: out of range
      raw(32, SIGTERM, 0, "x"),                     // Signal: no payload
      raw(33, 1, 0),                                // Stop: a unused
      raw(33, 0, 0, "x"),                           // Stop: no payload
      raw(19, 0, 0),                                // Events: no key
      raw(19, 64, 0, std::string(8, '\0')),         // Events: unknown key bit
      raw(19, 1, 0),                                // Events: count missing
      raw(19, 1, 0, std::string(16, '\0')),         // Events: one count too many
      raw(19, 1, 1, std::string(8, '\0')),          // Events: b unused
      raw(19, 1, 0, std::string(8, '\xff')),        // Events: a negative count
  };
  for (const std::string& b : bad) {
    Header h;
    std::memcpy(&h, b.data(), sizeof h);
    EXPECT_EQ(-EBADMSG, decode(b, g)) << "type " << h.type << " a " << h.a << " b " << h.b;
  }
  // Signal numbers are the spawner's to judge: the frame carries any int.
  ASSERT_EQ(0, decode(raw(32, 999, 0), g));
  EXPECT_EQ(999, std::get<SignalFrame>(g).signo);
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
    if (rc == 0) accepted++;
  }
  // Random headers almost never name a known type with valid fields.
  EXPECT_LT(accepted, 20);
}

TEST(Frame, SendRecvKeepsBoundariesAndPassesFds) {
  SocketPair sp;
  int pipefd[2];
  ASSERT_EQ(0, pipe(pipefd));
  ASSERT_EQ(0, send_frame(sp.fd[0], FdsFrame{1234, kFdStdout, "", {}}, &pipefd[0], 1));
  ASSERT_EQ(0, send_frame(sp.fd[0], ExitFrame{7}));
  close(pipefd[0]);

  Frame got;
  std::vector<int> fds;
  ASSERT_EQ(1, recv_frame(sp.fd[1], got, fds));
  ASSERT_TRUE(std::holds_alternative<FdsFrame>(got));
  EXPECT_EQ(1234, std::get<FdsFrame>(got).os_pid);
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
  ASSERT_TRUE(std::holds_alternative<ExitFrame>(got));
  EXPECT_EQ(7, std::get<ExitFrame>(got).wait_status);
  EXPECT_TRUE(fds.empty());

  close(sp.fd[0]);
  sp.fd[0] = -1;
  EXPECT_EQ(0, recv_frame(sp.fd[1], got, fds));
}

// On SOCK_SEQPACKET an empty message reads as 0 bytes, like the peer's
// close: only the close is EOF (for the spawner, "the VM is gone").
TEST(Frame, EmptyMessageIsMalformedNotEof) {
  SocketPair sp;
  ASSERT_EQ(0, send(sp.fd[0], "", 0, 0));
  ASSERT_EQ(0, send_frame(sp.fd[0], ExitFrame{3}));
  Frame got;
  std::vector<int> fds;
  EXPECT_EQ(-EBADMSG, recv_frame(sp.fd[1], got, fds));
  ASSERT_EQ(1, recv_frame(sp.fd[1], got, fds));
  EXPECT_EQ(3, std::get<ExitFrame>(got).wait_status);
  close(sp.fd[0]);
  sp.fd[0] = -1;
  EXPECT_EQ(0, recv_frame(sp.fd[1], got, fds));
}

TEST(Frame, RecvRejectsGarbageAndClosesItsFds) {
  SocketPair sp;
  corral::unique_fd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(devnull);
  // A raw message that is too short to be a frame, carrying an fd.
  const char junk[3] = {1, 2, 3};
  int sent = devnull.get();
  ASSERT_EQ(0, send_bytes(sp.fd[0], std::string_view(junk, sizeof junk), &sent, 1));
  devnull.reset();

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
  int fds[4] = {0, 1, 2, 0};
  SocketPair sp;
  EXPECT_EQ(-EINVAL, send_frame(sp.fd[0], SignalFrame{SIGTERM}, fds, 4));
  close(sp.fd[1]);
  sp.fd[1] = -1;
  EXPECT_EQ(-EPIPE, send_frame(sp.fd[0], SignalFrame{SIGTERM}));
}

}  // namespace
