// Killing a process group and a leaf cgroup (see group_kill.h).
#include "group_kill.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "sysfs.h"

namespace corral {
namespace {

// One round over dir and below. Returns how many pids it signalled.
int kill_procs_once(const std::string& dir) {
  std::string procs;
  if (int rc = read_file(dir + "/cgroup.procs", procs); rc < 0) return rc;
  int seen = 0;
  for (const char* s = procs.c_str(); *s;) {
    char* end;
    long pid = strtol(s, &end, 10);
    if (end == s) break;
    if (pid > 0) {
      (void)kill(static_cast<pid_t>(pid), SIGKILL);
      seen++;
    }
    s = end;
  }
  std::vector<std::string> subs;
  (void)subdirs(dir, subs);
  for (const std::string& name : subs) {
    const std::string sub = dir + "/" + name;
    int n = kill_procs_once(sub);
    if (n > 0) seen += n;
  }
  return seen;
}

}  // namespace

int kill_cgroup_procs(const std::string& dir) {
  int total = 0;
  for (int round = 0; round < 3; round++) {
    int n = kill_procs_once(dir);
    if (n < 0) return round == 0 ? n : total;
    if (n == 0) break;
    total += n;
  }
  return total;
}

int kill_cgroup(const std::string& dir) {
  int fd = open((dir + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = write(fd, "1", 1);
    int err = n < 0 ? errno : 0;
    close(fd);
    return n == 1 ? 0 : (err ? -err : -EIO);
  }
  if (errno != ENOENT) return -errno;
  // No cgroup.kill: either no such cgroup, or a kernel before 5.14.
  int n = kill_cgroup_procs(dir);
  return n < 0 ? n : 0;
}

TreeKill kill_tree(pid_t pgid, const std::string& leaf) {
  TreeKill r;
  if (pgid > 0 && kill(-pgid, SIGKILL) < 0) r.group = -errno;
  if (!leaf.empty()) r.leaf = kill_cgroup(leaf);
  return r;
}

}  // namespace corral
