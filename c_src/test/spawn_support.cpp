#include "spawn_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/child.hpp>
#include <boost/process/exception.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cgroup.h"
#include "fd.h"

// POSIX declares environ in no header (glibc does, under _GNU_SOURCE).
extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace corral::spawner {

SpawnResult spawn_child(const SpawnSpec& spec, const ChildContext& ctx) {
  SpawnResult res;
  Launch l;
  SpawnSpec copy = spec;
  if (int rc = start_child(std::move(copy), ctx, l, res.stage); rc < 0) {
    res.error = -rc;
    return res;
  }
  if (l.wait() == Launch::Result::Failed) {
    while (waitpid(l.pid(), nullptr, 0) < 0 && errno == EINTR) {
    }
    res.error = l.error();
    res.stage = l.stage();
    return res;
  }
  res.ok = true;
  res.child = std::move(l.child());
  return res;
}

pid_t reaped_pid() {
  try {
    boost::process::child c("/bin/true");
    c.wait();
    return c.id();
  } catch (const boost::process::process_error&) {
    return -1;
  }
}

}  // namespace corral::spawner

namespace corral::harness {

bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    if (!readable(fd, 5000ms)) return s + "<timeout>";
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return s;
    s.append(buf, static_cast<size_t>(n));
  }
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (readable(fd, 5000ms) && read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

pid_t read_pid_line(int fd) {
  std::string line = read_line(fd);
  return line.empty() ? -1 : static_cast<pid_t>(std::stol(line));
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string in_fork(const std::function<std::string()>& body) {
  int p[2];
  if (pipe(p) < 0) return "pipe failed";
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return "fork failed";
  }
  if (pid == 0) {
    close(p[0]);
    std::string out = body();
    (void)!write(p[1], out.data(), out.size());
    _exit(0);
  }
  close(p[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  waitpid(pid, nullptr, 0);
  return out;
}

std::string as_nobody(const std::function<std::string()>& body,
                      const std::function<bool()>& before) {
  passwd* pw = getpwnam("nobody");
  if (!pw) return "no nobody";
  return in_fork([&]() -> std::string {
    if (before && !before()) return "prepare failed";
    if (setgroups(0, nullptr) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
      return std::string("cannot become nobody: ") + strerror(errno);
    return body();
  });
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

bool gone(pid_t pid) { return kill(pid, 0) < 0 && errno == ESRCH; }

bool dead(pid_t pid) {
  for (int i = 0; i < 20; i++) {
    if (gone(pid)) return true;
    std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() &&
        (stat[paren + 2] == 'Z' || stat[paren + 2] == 'X'))
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

bool reaped_in_time(pid_t pid, int& st) {
  if (eventually([&] { return waitpid(pid, &st, WNOHANG) == pid; })) return true;
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return false;
}

std::map<int, std::string> open_fds(pid_t pid) {
  std::map<int, std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[256] = {};
    ssize_t n = readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
    out[atoi(e->d_name)] = n > 0 ? target : "";
  }
  closedir(d);
  return out;
}

std::string describe(const std::map<int, std::string>& fds) {
  std::string s;
  for (const auto& [fd, what] : fds) s += std::to_string(fd) + "=" + what + " ";
  return s;
}

std::vector<pid_t> children_of(pid_t ppid, bool with_zombies) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    std::string state;
    long parent = 0;
    rest >> state >> parent;
    if (parent == ppid && (with_zombies || state != "Z"))
      out.push_back(static_cast<pid_t>(atol(e->d_name)));
  }
  closedir(d);
  return out;
}

std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d))
    if (e->d_type == DT_DIR && e->d_name[0] != '.') out.emplace_back(e->d_name);
  closedir(d);
  return out;
}

std::string writable_v2_dir(std::string& why) {
  if (geteuid() != 0) {
    why = "needs root to create cgroups";
    return "";
  }
  std::string own;
  if (int rc = spawner::cgroup::own_v2_dir(own); rc < 0) {
    why = std::string("no cgroup v2 tree: ") + strerror(-rc);
    return "";
  }
  std::string probe = own + "/corral-test-probe." + std::to_string(getpid());
  if (mkdir(probe.c_str(), 0755) < 0) {
    why = "cannot write the cgroup v2 tree at " + own + ": " + strerror(errno);
    return "";
  }
  rmdir(probe.c_str());
  return own;
}

Request sh(const std::string& script) { return {"/bin/sh", {"sh", "-c", script}}; }

Handle::~Handle() {
  for (int fd : {ctl, in, out, err})
    if (fd >= 0) close(fd);
}

void SpawnerFixture::TearDown() {
  stop_spawner();
  flush_log();
}

void SpawnerFixture::flush_log() {
  if (log_.empty()) return;
  // What the spawner logged goes on to our stderr, as if it were its own.
  if (std::string s = slurp(log_); !s.empty()) fputs(s.c_str(), stderr);
  unlink(log_.c_str());
  log_.clear();
}

void SpawnerFixture::start_spawner(const SpawnerOpts& opts) {
  flush_log();
  int sp[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
  req_ = sp[0];
  // dup2 onto fd 3 clears close-on-exec, unless the socket is fd 3 already.
  unique_fd theirs(fcntl(sp[1], F_DUPFD_CLOEXEC, 10));
  close(sp[1]);
  ASSERT_TRUE(theirs);
  char tmpl[] = "/tmp/corral_spawner_stderr.XXXXXX";
  unique_fd log(mkostemp(tmpl, O_CLOEXEC));
  ASSERT_TRUE(log);
  log_ = tmpl;

  // All that the child needs is made here: after fork it only makes
  // system calls (other threads may hold the allocator's locks).
  std::vector<std::string> args = opts.wrapper;
  args.emplace_back(CORRAL_SPAWNER_PATH);
  args.emplace_back("3");
  std::vector<std::string> env;
  for (char** e = environ; *e; e++)
    if (opts.inherit_preload ||
        (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "CORRAL_FAULT", 12) != 0))
      env.emplace_back(*e);
  env.insert(env.end(), opts.env.begin(), opts.env.end());
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  rlimit nofile{};
  bool set_nofile = opts.nofile_soft > 0 || opts.nofile_hard > 0;
  if (set_nofile) {
    getrlimit(RLIMIT_NOFILE, &nofile);
    if (opts.nofile_hard > 0) nofile.rlim_max = opts.nofile_hard;
    nofile.rlim_cur = opts.nofile_soft > 0 ? opts.nofile_soft : nofile.rlim_max;
  }

  pid_t pid = fork();
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) {
    if (set_nofile && setrlimit(RLIMIT_NOFILE, &nofile) < 0) _exit(125);
    if (dup2(theirs.get(), 3) < 0 || dup2(log.get(), 2) < 0) _exit(126);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  pid_ = pid;
  reaped_ = false;
}

bool SpawnerFixture::spawner_exits_within(std::chrono::milliseconds limit, int& st) {
  if (pid_ <= 0) return false;
  if (!reaped_ && !eventually([&] { return waitpid(pid_, &status_, WNOHANG) == pid_; }, limit))
    return false;
  reaped_ = true;
  st = status_;
  return true;
}

bool SpawnerFixture::spawner_alive() {
  if (pid_ <= 0 || reaped_) return false;
  if (waitpid(pid_, &status_, WNOHANG) != pid_) return true;
  reaped_ = true;
  return false;
}

void SpawnerFixture::stop_spawner() {
  if (req_ >= 0) close(req_);
  req_ = -1;
  if (pid_ > 0) {
    int st;
    bool exited = spawner_exits_within(3000ms, st);
    if (!exited) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &st, 0);
    }
    EXPECT_TRUE(exited) << "spawner did not exit after request EOF";
  }
  pid_ = -1;
  reaped_ = false;
}

std::string SpawnerFixture::spawner_log() const { return log_.empty() ? "" : slurp(log_); }

std::string SpawnerFixture::base(const std::string& own) const {
  return own + "/corral." + std::to_string(pid_);
}

int SpawnerFixture::send_spawn(const std::string& payload, bool attach_ctl) const {
  int cp[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cp), 0);
  EXPECT_EQ(frame::send_frame(req_, frame::SpawnFrame{payload, ""}, &cp[1], attach_ctl ? 1 : 0), 0);
  close(cp[1]);
  return cp[0];
}

int SpawnerFixture::recv(int ctl, frame::Frame& f, std::vector<int>& fds,
                         std::chrono::milliseconds timeout) {
  if (!readable(ctl, timeout)) return -ETIMEDOUT;
  return frame::recv_frame(ctl, f, fds);
}

std::string SpawnerFixture::describe(const frame::Frame& f) {
  if (auto* e = std::get_if<frame::ErrorFrame>(&f))
    return "Error: errno " + std::to_string(e->err) + " (" + strerror(e->err) + ") at " + e->stage;
  return "type " + std::to_string(static_cast<unsigned>(frame::type_of(f)));
}

void SpawnerFixture::start(const Request& r, Handle& h) {
  h.ctl = send_spawn(encode(r));
  frame::Frame f;
  std::vector<int> fds;
  ASSERT_EQ(recv(h.ctl, f, fds), 1);
  auto* got = std::get_if<frame::FdsFrame>(&f);
  ASSERT_TRUE(got) << describe(f);
  h.pid = got->os_pid;
  h.leaf = got->leaf;
  size_t i = 0;
  if (got->pipes & frame::kFdStdin) h.in = fds.at(i++);
  if (got->pipes & frame::kFdStdout) h.out = fds.at(i++);
  if (got->pipes & frame::kFdStderr) h.err = fds.at(i++);
  ASSERT_EQ(i, fds.size());
}

int SpawnerFixture::expect_exit(const Handle& h, std::chrono::milliseconds timeout) {
  frame::Frame f;
  std::vector<int> fds;
  EXPECT_EQ(recv(h.ctl, f, fds, timeout), 1);
  auto* exit = std::get_if<frame::ExitFrame>(&f);
  EXPECT_TRUE(exit) << describe(f);
  EXPECT_TRUE(fds.empty());
  frame::Frame eof;
  EXPECT_EQ(recv(h.ctl, eof, fds, 2000ms), 0) << "ctl not closed after Exit";
  return exit ? exit->wait_status : -1;
}

void SpawnerFixture::expect_error(const std::string& payload, int err, const std::string& stage) {
  unique_fd ctl(send_spawn(payload));
  frame::Frame f;
  std::vector<int> fds;
  ASSERT_EQ(recv(ctl.get(), f, fds), 1);
  auto* e = std::get_if<frame::ErrorFrame>(&f);
  ASSERT_TRUE(e) << describe(f);
  EXPECT_EQ(e->err, err) << strerror(e->err);
  EXPECT_EQ(e->stage, stage);
  EXPECT_EQ(recv(ctl.get(), f, fds), 0) << "ctl not closed after Error";
}

void SpawnerFixture::send_ctl(const Handle& h, const frame::Frame& f) {
  ASSERT_EQ(frame::send_frame(h.ctl, f), 0);
}

}  // namespace corral::harness
