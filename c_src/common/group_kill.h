// Killing a child's whole tree: its process group and its leaf cgroup.
//
// Shared by the spawner (a child past its kill_timeout) and the driver (a
// spawner that died: nobody else is left to do it). The process group
// catches the usual descendants; the leaf cgroup also catches those that
// left the group (setsid, setpgid) and that PDEATHSIG does not reach.
#pragma once

#include <sys/types.h>

#include <string>

namespace corral {

struct TreeKill {
  int group = 0;  // 0, or -errno of kill(-pgid) (-ESRCH: the group is empty)
  int leaf = 0;   // 0, or -errno of kill_cgroup (-ENOENT: no such cgroup)
};

// SIGKILLs the process group pgid (skipped when pgid <= 0) and then every
// process in the cgroup leaf and below (skipped when leaf is empty).
TreeKill kill_tree(pid_t pgid, const std::string& leaf);

// SIGKILLs every process in the cgroup at dir and below, by writing "1" to
// its cgroup.kill, or, on kernels before 5.14 that lack it, by
// kill_cgroup_procs. 0 or -errno (-ENOENT: dir does not exist).
int kill_cgroup(const std::string& dir);

// The fallback: SIGKILLs each pid listed in cgroup.procs of dir and of
// every cgroup below it, in rounds until a round finds none (at most 3), to
// catch forks in flight; racy all the same, so callers check again later.
// Returns how many pids it signalled, or -errno if dir cannot be read.
int kill_cgroup_procs(const std::string& dir);

}  // namespace corral
