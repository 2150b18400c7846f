// Small readers of /proc and cgroupfs files, shared by the spawner's cgroup
// code and the kill of a child's tree (which the driver also runs).
#pragma once

#include <fcntl.h>

#include <string>
#include <vector>

namespace corral {

// Reads the whole of path, relative to the directory `at` (or AT_FDCWD).
// 0 or -errno.
int read_file(const std::string& path, std::string& ret, int at = AT_FDCWD);

// The names of the directories directly below dir (for cgroupfs: its child
// cgroups). 0 or -errno.
int subdirs(const std::string& dir, std::vector<std::string>& ret);

}  // namespace corral
