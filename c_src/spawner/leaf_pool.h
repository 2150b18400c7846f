// The spawner's cgroups: its base <own v2 cgroup>/corral.<pid> and one leaf
// per child below it, made ahead of time and reused while clean.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cgroup.h"
#include "fd.h"
#include "log.h"

namespace corral::spawner {

class LeafPool {
 public:
  // Makes the base. 0, or -errno with why set (containment then falls back
  // to process groups, and the pool stays empty).
  int init(pid_t self, std::string& why);

  // Whether cgroups are in use.
  explicit operator bool() const { return static_cast<bool>(base_); }
  // The base's directory; empty without one.
  const std::string& base_path() const { return base_.path(); }

  // A leaf for the next child, clean or new, and how the child gets in: dir,
  // the leaf's directory for clone3(CLONE_INTO_CGROUP), while that works
  // here; otherwise procs, its cgroup.procs. 0 or -errno (logged).
  int take(cgroup::Dir& leaf, unique_fd& procs, unique_fd& dir);
  // clone3(CLONE_INTO_CGROUP) was refused with err for leaf: opens the
  // leaf's cgroup.procs for the child to join through instead. Where the
  // kernel lacks it (ENOSYS, E2BIG, EINVAL before 5.7) later children join
  // that way from the start. Returns the fd or -errno.
  int clone3_refused(const cgroup::Dir& leaf, int err);
  // A leaf no child was ever killed in, and that is empty now: as release.
  void give_back(cgroup::Dir& leaf);
  // The leaf of a finished child: kept for reuse while clean (never killed,
  // no subgroups of the child's making), else removed with its subgroups.
  void release(cgroup::Dir& leaf, bool killed);
  // Keeps one leaf ready, so that the mkdir is not on the next spawn's path.
  void prepare_spare();
  // 1, 0, or -errno (no leaf: 0).
  int populated(const cgroup::Dir& leaf) const;
  // Kills everything below the base, waits up to limit for it to empty and
  // removes it all.
  void destroy(std::chrono::milliseconds limit);

 private:
  int make_leaf(cgroup::Dir& leaf, bool quiet);
  bool has_subgroups(const cgroup::Dir& leaf) const;

  cgroup::Dir base_;        // <own v2 cgroup>/corral.<pid>, or empty
  unique_fd base_fd_;       // base_ opened, for short relative path walks
  uint64_t next_leaf_ = 0;  // leaves are c0, c1, ...; never reused
  // Leaves ready for the next spawns: made ahead of time, or given back by a
  // child whose tree was already gone when its leader was reaped, so that the
  // leaf was never cgroup.kill'ed. (Declared after base_, so destroyed
  // before it.)
  std::vector<cgroup::Dir> clean_;
  // clone3(CLONE_INTO_CGROUP) works here; once it fails as unsupported,
  // children join their leaf through cgroup.procs.
  bool use_clone3_ = true;
  LogOnce make_failed_, procs_failed_, remove_failed_;
};

}  // namespace corral::spawner
