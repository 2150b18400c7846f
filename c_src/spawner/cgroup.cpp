// cgroup v2 for the spawner: finding the unified hierarchy and our place in
// it, and making, killing and removing the spawner's base and per-child leaf
// cgroups.
#include "cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "group_kill.h"
#include "sysfs.h"

namespace corral::spawner::cgroup {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollStep = std::chrono::milliseconds(5);

// Splits text into lines (without the '\n') and calls f on each until f
// returns true.
template <typename F>
bool each_line(std::string_view text, F f) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (f(line)) return true;
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return false;
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') i++;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') j++;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Polls until dir is unpopulated (or unreadable) or until `until`.
bool wait_empty(const std::string& dir, Clock::time_point until) {
  for (;;) {
    if (populated(dir) <= 0) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(kPollStep);
  }
}

bool stale_pid(std::string_view name, pid_t self, bool self_is_stale) {
  constexpr std::string_view kPrefix = "corral.";
  if (name.substr(0, kPrefix.size()) != kPrefix || name.size() == kPrefix.size()) return false;
  // corral.<pid> (a base) or corral.<pid>.<n> (a leaf in a cgroup_base).
  std::string_view rest = name.substr(kPrefix.size());
  if (size_t dot = rest.find('.'); dot != std::string_view::npos) {
    std::string_view n = rest.substr(dot + 1);
    if (n.empty() || n.find_first_not_of("0123456789") != std::string_view::npos) return false;
    rest = rest.substr(0, dot);
  }
  std::string digits(rest);
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  pid_t pid = static_cast<pid_t>(strtol(digits.c_str(), nullptr, 10));
  if (pid <= 0) return false;
  // EPERM means alive (someone else's); only ESRCH is dead.
  if (pid == self) return self_is_stale;
  return kill(pid, 0) < 0 && errno == ESRCH;
}

}  // namespace

// --- parsers -----------------------------------------------------------------

int parse_v2_mount(std::string_view mountinfo, Mount& ret) {
  bool found = each_line(mountinfo, [&](std::string_view line) {
    // id parent major:minor root mount-point options [optional...] - fstype source super
    std::vector<std::string_view> f = split_spaces(line);
    size_t sep = 6;
    while (sep < f.size() && f[sep] != "-") sep++;
    if (sep + 1 >= f.size() || f[sep + 1] != "cgroup2") return false;
    ret.root = unescape(f[3]);
    ret.point = unescape(f[4]);
    return true;
  });
  return found ? 0 : -ENOENT;
}

int parse_v2_path(std::string_view proc_cgroup, std::string& ret) {
  bool found = each_line(proc_cgroup, [&](std::string_view line) {
    if (line.substr(0, 3) != "0::" || line.size() < 4 || line[3] != '/') return false;
    ret = std::string(line.substr(3));
    return true;
  });
  return found ? 0 : -ENOENT;
}

int v2_dir(const Mount& m, std::string_view path, std::string& ret) {
  std::string_view root = m.root;
  if (root.size() > 1 && root.back() == '/') root.remove_suffix(1);
  std::string_view rest;
  if (root == "/") {
    rest = path;
  } else if (path == root) {
    rest = "";
  } else if (path.size() > root.size() && path.substr(0, root.size()) == root &&
             path[root.size()] == '/') {
    rest = path.substr(root.size());
  } else {
    return -ENOENT;  // our cgroup is not visible through this mount
  }
  // "/.." appears when a cgroup namespace root lies below our cgroup.
  if (rest == "/.." || rest.substr(0, 4) == "/../") return -ENOENT;
  std::string point = m.point;
  while (point.size() > 1 && point.back() == '/') point.pop_back();
  if (rest == "/") rest = "";
  ret = point + std::string(rest);
  return 0;
}

int parse_populated(std::string_view events) {
  int result = -EBADMSG;
  each_line(events, [&](std::string_view line) {
    if (line == "populated 0") result = 0;
    if (line == "populated 1") result = 1;
    return result >= 0;
  });
  return result;
}

// --- the live system ---------------------------------------------------------

int own_v2_dir(std::string& ret) {
  std::string text;
  if (int rc = read_file("/proc/self/mountinfo", text); rc < 0) return rc;
  Mount m;
  if (int rc = parse_v2_mount(text, m); rc < 0) return rc;
  if (int rc = read_file("/proc/self/cgroup", text); rc < 0) return rc;
  std::string path;
  if (int rc = parse_v2_path(text, path); rc < 0) return rc;
  return v2_dir(m, path, ret);
}

int populated(const std::string& dir, int at) {
  std::string text;
  if (int rc = read_file(dir + "/cgroup.events", text, at); rc < 0) {
    // A v1 group has no cgroup.events: any pid in its cgroup.procs (which
    // lists no zombies) or below it.
    if (rc != -ENOENT || read_file(dir + "/cgroup.procs", text, at) < 0) return rc;
    if (text.find_first_of("0123456789") != std::string::npos) return 1;
    std::vector<std::string> subs;
    if (at == AT_FDCWD && subdirs(dir, subs) == 0)
      for (const std::string& s : subs)
        if (populated(dir + "/" + s) > 0) return 1;
    return 0;
  }
  return parse_populated(text);
}

int kill_all(const std::string& dir) { return kill_cgroup(dir); }

int remove_tree(const std::string& dir) {
  std::vector<std::string> subs;
  if (int rc = subdirs(dir, subs); rc < 0) return rc;
  int first = 0;
  for (const std::string& s : subs) {
    int rc = remove_tree(dir + "/" + s);
    if (rc < 0 && first == 0) first = rc;
  }
  if (rmdir(dir.c_str()) < 0 && first == 0) first = -errno;
  return first;
}

int destroy(const std::string& dir, std::chrono::milliseconds limit) {
  int rc = kill_all(dir);
  if (rc == -ENOENT) {
    // The directory itself may be gone already.
    if (access(dir.c_str(), F_OK) < 0 && errno == ENOENT) return 0;
  }
  (void)wait_empty(dir, Clock::now() + limit);
  return remove_tree(dir);
}

int remove_stale_bases(const std::string& parent, pid_t self, std::chrono::milliseconds limit,
                       bool self_is_stale) {
  std::vector<std::string> subs;
  if (int rc = subdirs(parent, subs); rc < 0) return rc;
  std::vector<std::string> stale;
  for (const std::string& s : subs)
    if (stale_pid(s, self, self_is_stale)) stale.push_back(parent + "/" + s);
  // Kill all first, then wait once: the bases empty in parallel.
  for (const std::string& dir : stale) (void)kill_all(dir);
  auto until = Clock::now() + limit;
  int removed = 0;
  for (const std::string& dir : stale) {
    (void)wait_empty(dir, until);
    if (remove_tree(dir) == 0) removed++;
  }
  return removed;
}

// --- Dir -----------------------------------------------------------------------

Dir& Dir::operator=(Dir&& o) noexcept {
  if (this != &o) {
    (void)remove();
    path_ = std::move(o.path_);
    o.path_.clear();
  }
  return *this;
}

int Dir::make(std::string path, Dir& ret) {
  if (mkdir(path.c_str(), 0755) < 0) return -errno;
  ret = Dir();
  ret.path_ = std::move(path);
  return 0;
}

std::string_view Dir::name() const {
  size_t slash = path_.rfind('/');
  return slash == std::string::npos ? std::string_view(path_)
                                    : std::string_view(path_).substr(slash + 1);
}

int Dir::open_procs() const {
  int fd = open((path_ + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  return fd;
}

int Dir::remove() {
  if (path_.empty()) return 0;
  if (rmdir(path_.c_str()) < 0 && errno != ENOENT) {
    // A child that runs Corral itself leaves its own spawner's base below
    // our leaf when the tree is killed: remove those too, deepest first.
    if (errno != EBUSY) return -errno;
    if (int rc = remove_tree(path_); rc < 0 && rc != -ENOENT) return rc;
  }
  path_.clear();
  return 0;
}

int Dir::destroy(std::chrono::milliseconds limit) {
  if (path_.empty()) return 0;
  int rc = cgroup::destroy(path_, limit);
  if (rc == 0 || rc == -ENOENT) path_.clear();
  return rc == -ENOENT ? 0 : rc;
}

// --- the spawner's base -----------------------------------------------------------

int make_base(pid_t self, Dir& ret, std::string& why) {
  std::string own;
  if (int rc = own_v2_dir(own); rc < 0) {
    why = rc == -ENOENT ? "no cgroup v2 hierarchy holds this process"
                        : std::string("cannot locate our cgroup: ") + strerror(-rc);
    return rc;
  }
  (void)remove_stale_bases(own, self, std::chrono::seconds(1));
  Dir base;
  std::string path = own + "/corral." + std::to_string(self);
  if (int rc = Dir::make(path, base); rc < 0) {
    why = "cannot create " + path + ": " + strerror(-rc) + denied_fix(own, rc);
    return rc;
  }
  // Moving a process in needs write access to cgroup.procs of the common
  // ancestor, and may be refused for other reasons (cgroup namespaces,
  // threaded cgroups). Prove it works once rather than fail every spawn.
  Dir probe;
  if (int rc = Dir::make(path + "/probe", probe); rc < 0) {
    why = "cannot create " + path + "/probe: " + strerror(-rc);
    return rc;
  }
  int fd = probe.open_procs();
  if (fd < 0) {
    why = "cannot open " + probe.path() + "/cgroup.procs: " + strerror(-fd);
    return fd;
  }
  pid_t pid = fork();
  if (pid == 0) _exit(write(fd, "0", 1) == 1 ? 0 : errno & 0xff);
  // cppcheck-suppress variableScope ; errno is read before close() can change it
  int err = pid < 0 ? errno : 0;
  close(fd);
  if (pid < 0) {
    why = std::string("cannot fork a probe: ") + strerror(err);
    return -err;
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    int e = WIFEXITED(st) ? WEXITSTATUS(st) : EIO;
    // The move needs write access to the cgroup.procs of both groups'
    // common ancestor: our own group's.
    why =
        "a child cannot move itself into " + probe.path() + ": " + strerror(e) + denied_fix(own, e);
    return -e;
  }
  (void)wait_empty(probe.path(), Clock::now() + std::chrono::seconds(1));
  if (int rc = probe.remove(); rc < 0) {
    why = "cannot remove " + probe.path() + ": " + strerror(-rc);
    return rc;
  }
  ret = std::move(base);
  return 0;
}

std::string denied_fix(const std::string& dir, int err) {
  if (err < 0) err = -err;
  uid_t uid = geteuid();
  if ((err != EACCES && err != EPERM) || uid == 0) return {};
  std::string n = std::to_string(uid);
  return "; delegate " + dir + " to uid " + n + " (systemd Delegate=yes) or run as root";
}

}  // namespace corral::spawner::cgroup
