// End-to-end check of the spawner against malformed requests, run by
// `make fuzz`:
//
//   malformed_requests SPAWNER LOG SPAWN_SPEC_DIR FRAME_DIR [MORE_DIRS...]
//
// Starts SPAWNER (its stderr to LOG) on a request socket as the driver
// does, starts a few children that stay alive, then sends a stream of bad
// requests: the seed corpus mutated (and any further corpus directories,
// e.g. what a fuzz run found) as Spawn payloads with a control socket, as
// raw frames with 0..3 descriptors, and hand-made bad frames. Among them,
// every 25 bad requests, a valid spawn. It fails unless
//   - every Spawn with a bad payload is answered Error(EINVAL, "decode"),
//   - every descriptor we attach comes back closed (EOF on our end),
//   - every valid spawn gets Fds, its output and Exit 0,
//   - the children started first still answer on their pipes and exit 0,
//   - the spawner holds as many descriptors at the end as at the start,
//   - it exits 0 when the request socket closes.
// A candidate that would be a valid spawn is never sent: mutations of a
// real request could name another program.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "frame.h"
#include "options.h"
#include "request_terms.h"
#include "wire.h"

namespace frame = corral::frame;
using corral::fuzz::wire_bytes;
using corral::fuzz::wire_of;

namespace {

constexpr int kTimeoutMs = 20000;  // generous: only a hang reaches it
constexpr size_t kMaxFromDirs = 3000;
constexpr int kMutationsPerSeed = 60;
constexpr int kValidEvery = 25;

int failures = 0;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "malformed_requests: %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                                       \
      std::fputc('\n', stderr);                                                \
      failures++;                                                              \
      return false;                                                            \
    }                                                                          \
  } while (0)

bool readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, ms);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

// One frame within the timeout: recv_frame's result, or -ETIMEDOUT.
int recv_within(int fd, frame::Frame& f, std::vector<int>& fds) {
  if (!readable(fd, kTimeoutMs)) return -ETIMEDOUT;
  return frame::recv_frame(fd, f, fds);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> read_dir(const std::string& dir) {
  std::vector<std::string> names, out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    closedir(d);
  }
  std::sort(names.begin(), names.end());  // the same order on every run
  for (const auto& n : names) out.push_back(slurp(dir + "/" + n));
  return out;
}

size_t count_fds(pid_t pid) {
  size_t n = 0;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') n++;
    closedir(d);
  }
  return n;
}

bool valid_spec(std::string_view term) {
  corral::spawner::SpawnSpec spec;
  std::string why;
  return corral::spawner::decode_spawn_spec(term, spec, why);
}

// Byte-level mutations of a seed, as a fuzzer's first steps would make.
std::string mutate(std::string s, std::mt19937& rng) {
  auto pick = [&](size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };
  int steps = 1 + static_cast<int>(pick(4));
  for (int i = 0; i < steps; i++) {
    switch (pick(6)) {
      case 0:
        if (!s.empty()) {
          char& c = s[pick(s.size())];
          c = static_cast<char>(c ^ (1 << pick(8)));
        }
        break;
      case 1:
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(pick(256));
        break;
      case 2:
        s.resize(pick(s.size() + 1));
        break;
      case 3:
        s.insert(pick(s.size() + 1), 1, static_cast<char>(pick(256)));
        break;
      case 4:
        if (!s.empty()) s.erase(pick(s.size()), 1 + pick(8));
        break;
      case 5: {  // a length or tag field set to an extreme
        if (s.size() < 4) break;
        size_t at = pick(s.size() - 3);
        static const char kExtremes[][4] = {
            {'\xff', '\xff', '\xff', '\xff'}, {'\x7f', '\xff', '\xff', '\xff'}, {0, 0, 0, 0}};
        std::memcpy(&s[at], kExtremes[pick(3)], 4);
        break;
      }
    }
  }
  return s;
}

struct Spawner {
  pid_t pid = -1;
  int req = -1;

  bool start(const char* path, const char* log) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) return false;
    int big = 4 << 20;  // the oversized frame must fit in one message
    setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (logfd >= 0) dup2(logfd, 2);
      dup2(sp[1], 3);  // dup2 clears CLOEXEC on the copy
      execl(path, "corral_spawner", "3", static_cast<char*>(nullptr));
      _exit(126);
    }
    close(sp[1]);
    req = sp[0];
    return true;
  }

  // Sends raw bytes with the given descriptors attached.
  bool send_raw(std::string_view bytes, const int* fds, size_t n) const {
    return frame::send_bytes(req, bytes, fds, n) == 0;
  }

  // Sends a Spawn frame (payload, b) with `extra` more descriptors beside
  // the control socket; returns our end of the control socket.
  int send_spawn(const std::string& payload, int64_t b = 0, size_t extra = 0) const {
    int cp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cp) != 0) return -1;
    std::string bytes = wire_bytes(static_cast<uint32_t>(frame::Type::Spawn), 0, 0, b, payload);
    int fds[3] = {cp[1], cp[1], cp[1]};
    bool ok = send_raw(bytes, fds, 1 + extra);
    close(cp[1]);
    if (!ok) {
      close(cp[0]);
      return -1;
    }
    return cp[0];
  }
};

// Expects EOF on ctl, after at most one Error(EINVAL, "decode") frame
// when `error` is true (and none when it is false).
bool expect_decode_error(int ctl, bool error, const char* what, size_t i) {
  frame::Frame f;
  std::vector<int> fds;
  int r = recv_within(ctl, f, fds);
  if (error) {
    CHECK(r == 1, "%s %zu: no answer (%d)", what, i, r);
    auto w = wire_of(f);
    CHECK(w.h.type == static_cast<uint32_t>(frame::Type::Error) && w.h.a == EINVAL &&
              w.payload == "decode",
          "%s %zu: answered type %u a=%lld '%s'", what, i, w.h.type, static_cast<long long>(w.h.a),
          w.payload.c_str());
    r = recv_within(ctl, f, fds);
  }
  CHECK(r == 0, "%s %zu: control socket not closed (%d, type %u)", what, i, r,
        r == 1 ? wire_of(f).h.type : 0);
  close(ctl);
  return true;
}

// The valid requests, by the tests' encoder (c_src/test/request_terms.h).
std::string encode_request(const std::string& path, const std::vector<std::string>& argv) {
  return corral::spawner::terms::encode({path, argv});
}

struct Child {
  int ctl = -1, in = -1, out = -1, err = -1;
};

bool start_child(Spawner& sp, const std::string& term, Child& c) {
  c.ctl = sp.send_spawn(term, 0);
  CHECK(c.ctl >= 0, "cannot send a valid spawn");
  frame::Frame f;
  std::vector<int> fds;
  int r = recv_within(c.ctl, f, fds);
  CHECK(r == 1, "valid spawn not answered (%d)", r);
  auto w = wire_of(f);
  CHECK(w.h.type == static_cast<uint32_t>(frame::Type::Fds),
        "valid spawn answered type %u a=%lld '%s'", w.h.type, static_cast<long long>(w.h.a),
        w.payload.c_str());
  CHECK(fds.size() == 3 && w.h.b == 7, "valid spawn: %zu fds, mask %lld", fds.size(),
        static_cast<long long>(w.h.b));
  c.in = fds[0];
  c.out = fds[1];
  c.err = fds[2];
  return true;
}

std::string read_to_eof(int fd) {
  std::string s;
  char buf[256];
  while (readable(fd, kTimeoutMs)) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

bool finish_child(Child& c, const std::string& want_out) {
  close(c.in);
  std::string got = read_to_eof(c.out);
  close(c.out);
  close(c.err);
  CHECK(got == want_out, "child printed '%s', expected '%s'", got.c_str(), want_out.c_str());
  frame::Frame f;
  std::vector<int> fds;
  int r = recv_within(c.ctl, f, fds);
  CHECK(r == 1, "child: no Exit (%d)", r);
  auto w = wire_of(f);
  int st = static_cast<int>(w.h.a);
  CHECK(
      w.h.type == static_cast<uint32_t>(frame::Type::Exit) && WIFEXITED(st) && WEXITSTATUS(st) == 0,
      "child: no Exit 0 (type %u, status %d)", w.h.type, st);
  r = recv_within(c.ctl, f, fds);
  CHECK(r == 0, "child: control socket not closed after Exit (%d)", r);
  close(c.ctl);
  return true;
}

bool valid_spawn(Spawner& sp, int n) {
  std::string word = "ok-" + std::to_string(n);
  Child c;
  if (!start_child(sp, encode_request("/bin/echo", {"echo", word}), c)) return false;
  return finish_child(c, word + "\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s SPAWNER LOG SPAWN_SPEC_DIR FRAME_DIR [DIR...]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  std::mt19937 rng(20261203);

  // Bad Spawn payloads: mutated seeds, then whatever further dirs hold.
  std::vector<std::string> payloads;
  std::vector<std::string> seeds = read_dir(argv[3]);
  if (seeds.empty()) {
    std::fprintf(stderr, "malformed_requests: no seeds in %s\n", argv[3]);
    return 2;
  }
  for (const auto& s : seeds)
    for (int i = 0; i < kMutationsPerSeed; i++) payloads.push_back(mutate(s, rng));
  payloads.emplace_back("");
  payloads.emplace_back("garbage");
  for (int d = 5; d < argc; d++) {
    std::vector<std::string> more = read_dir(argv[d]);
    if (more.size() > kMaxFromDirs) more.resize(kMaxFromDirs);
    payloads.insert(payloads.end(), more.begin(), more.end());
  }
  std::erase_if(payloads, [](const std::string& p) { return valid_spec(p); });

  // Raw frames: the frame seeds mutated (byte 0 is the fd count, as in the
  // fuzz target), plus hand-made ones.
  struct Raw {
    std::string bytes;
    size_t nfds;
  };
  std::vector<Raw> raws;
  std::vector<std::string> frame_seeds = read_dir(argv[4]);
  for (const auto& s : frame_seeds) {
    for (int i = 0; i < kMutationsPerSeed; i++) {
      std::string m = mutate(s, rng);
      if (m.empty()) continue;
      raws.push_back({m.substr(1), static_cast<size_t>(static_cast<unsigned char>(m[0]) % 4)});
    }
  }
  auto header = [](uint32_t type, uint32_t flags, int64_t a, int64_t b, std::string_view p) {
    return wire_bytes(type, flags, a, b, p);
  };
  std::string term = encode_request("/bin/echo", {"echo", "never"});
  raws.push_back({"", 0});                                      // an empty message
  raws.push_back({"", 1});                                      // empty, with a socket
  raws.push_back({header(1, 0, 0, 0, term).substr(0, 23), 1});  // short header
  raws.push_back({header(1, 1, 0, 0, term), 1});                // flags set
  raws.push_back({header(0, 0, 0, 0, term), 1});                // type 0
  raws.push_back({header(999, 0, 0, 0, term), 1});              // unknown type
  raws.push_back({header(1, 0, 0, 0, term), 0});                // Spawn without a socket
  raws.push_back({header(1, 0, 0, 0, term), 2});                // two sockets
  raws.push_back({header(1, 0, 0, 0, term), 3});                // three
  for (uint32_t t : {16u, 17u, 18u, 32u, 33u}) raws.push_back({header(t, 0, 9, 0, term), 1});
  raws.push_back({header(1, 0, 0, 0, std::string(frame::kMaxFrame, 'x')), 1});  // too long
  // The driver's split into term and cwd, with b pointing anywhere.
  for (int64_t b : {int64_t{-1}, int64_t{1}, static_cast<int64_t>(term.size()) - 1,
                    static_cast<int64_t>(term.size()) + 5, INT64_MAX, INT64_MIN})
    raws.push_back({header(1, 0, 0, b, term + "/cwd"), 1});
  std::erase_if(raws, [](const Raw& r) {
    frame::Frame f;
    // Would spawn: a well-formed Spawn with exactly one socket and a valid
    // term (the payload, or its first b bytes when a cwd follows).
    if (frame::decode(r.bytes, f) != 0 || r.nfds != 1) return false;
    auto w = wire_of(f);
    if (w.h.type != static_cast<uint32_t>(frame::Type::Spawn)) return false;
    std::string_view t = w.payload;
    if (w.h.b > 0 && static_cast<uint64_t>(w.h.b) <= t.size()) t = t.substr(0, w.h.b);
    return valid_spec(t);
  });

  Spawner sp;
  if (!sp.start(argv[1], argv[2])) {
    std::perror("malformed_requests: start");
    return 1;
  }
  auto run = [&]() -> bool {
    // Children that live through the whole barrage.
    std::vector<Child> alive(3);
    for (auto& c : alive)
      if (!start_child(sp, encode_request("/bin/sh", {"sh", "-c", "read l; echo \"got $l\""}), c))
        return false;
    for (int i = 0; i < 3; i++)
      if (!valid_spawn(sp, -1 - i)) return false;
    size_t fds_before = count_fds(sp.pid);

    int valid = 0;
    size_t bad = 0;
    auto between = [&]() { return ++bad % kValidEvery != 0 || valid_spawn(sp, valid++); };
    for (size_t i = 0; i < payloads.size(); i++) {
      int64_t b = 0;
      std::string p = payloads[i];
      if (i % 3 == 1) {  // as the driver sends it: term, then the VM's cwd
        b = static_cast<int64_t>(p.size());
        p += "/home/corral";
      }
      int ctl = sp.send_spawn(p, b);
      CHECK(ctl >= 0, "payload %zu: send failed", i);
      if (!expect_decode_error(ctl, true, "payload", i) || !between()) return false;
    }
    for (size_t i = 0; i < raws.size(); i++) {
      const Raw& r = raws[i];
      int cp[2];
      CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cp) == 0, "socketpair");
      int fds[3] = {cp[1], cp[1], cp[1]};
      bool sent = sp.send_raw(r.bytes, fds, r.nfds);
      close(cp[1]);
      CHECK(sent, "raw frame %zu (%zu bytes): send failed: %s", i, r.bytes.size(), strerror(errno));
      if (r.nfds == 0) {
        close(cp[0]);
      } else {
        // Answered with an error only when it reached the term's decoding
        // or the descriptor count check: a well-formed Spawn frame.
        frame::Frame f;
        bool answered = frame::decode(r.bytes, f) == 0 &&
                        wire_of(f).h.type == static_cast<uint32_t>(frame::Type::Spawn);
        if (!expect_decode_error(cp[0], answered, "raw frame", i)) return false;
      }
      if (!between()) return false;
    }
    for (int i = 0; i < 3; i++)
      if (!valid_spawn(sp, valid++)) return false;
    size_t fds_after = count_fds(sp.pid);
    CHECK(fds_after == fds_before, "spawner fds: %zu before the bad requests, %zu after",
          fds_before, fds_after);
    for (auto& c : alive) {
      CHECK(write(c.in, "ping\n", 5) == 5, "write to a child's stdin");
      if (!finish_child(c, "got ping\n")) return false;
    }
    std::printf(
        "malformed_requests: %zu bad Spawn payloads answered Error(EINVAL, decode), %zu bad raw "
        "frames sent, %d valid spawns among them and 3 long-lived children served; spawner "
        "fds %zu before and after\n",
        payloads.size(), raws.size(), valid, fds_before);
    return true;
  };
  bool ok = run();
  close(sp.req);
  int st = 0;
  for (int i = 0; i < kTimeoutMs / 10; i++) {
    if (waitpid(sp.pid, &st, WNOHANG) == sp.pid) {
      sp.pid = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (sp.pid > 0) {
    kill(sp.pid, SIGKILL);
    waitpid(sp.pid, &st, 0);
    std::fprintf(stderr, "malformed_requests: spawner did not exit after request EOF\n");
    ok = false;
  } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    std::fprintf(stderr, "malformed_requests: spawner ended with status %d\n", st);
    ok = false;
  }
  if (!ok || failures > 0) {
    std::fprintf(stderr, "malformed_requests: FAILED (spawner log: %s)\n", argv[2]);
    return 1;
  }
  return 0;
}
