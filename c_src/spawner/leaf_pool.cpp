#include "leaf_pool.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "child.h"
#include "log.h"

namespace corral::spawner {
namespace {

// Clean leaves kept for reuse.
constexpr size_t kCleanLeaves = 16;

}  // namespace

int LeafPool::init(pid_t self, std::string& why) {
  if (int rc = cgroup::make_base(self, base_, why); rc < 0) return rc;
  use_clone3_ = can_clone_into_cgroup();
  base_fd_.reset(open(base_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!base_fd_) logf("cannot open %s: %s", base_.path().c_str(), strerror(errno));
  return 0;
}

// Makes a fresh leaf. 0 or -errno (logged unless quiet: a spare that cannot
// be made is retried at the spawn, which reports the error).
int LeafPool::make_leaf(cgroup::Dir& leaf, bool quiet) {
  std::string path = base_.path() + "/c" + std::to_string(next_leaf_++);
  int rc = cgroup::Dir::make(path, leaf);
  if (rc < 0 && !quiet) make_failed_("cannot make cgroup %s: %s", path.c_str(), strerror(-rc));
  return rc;
}

int LeafPool::take(cgroup::Dir& leaf, unique_fd& procs, unique_fd& dir) {
  if (!clean_.empty()) {
    leaf = std::move(clean_.back());
    clean_.pop_back();
  } else if (int rc = make_leaf(leaf, false); rc < 0) {
    return rc;
  }
  if (use_clone3_) {
    // The directory itself, for clone3(CLONE_INTO_CGROUP).
    dir.reset(base_fd_ ? openat(base_fd_.get(), std::string(leaf.name()).c_str(),
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                       : open(leaf.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) return 0;
  }
  // Without it the child moves itself in through cgroup.procs.
  int rc = leaf.open_procs();
  if (rc < 0) {
    procs_failed_("cannot open %s/cgroup.procs: %s", leaf.path().c_str(), strerror(-rc));
    return rc;
  }
  procs.reset(rc);
  return 0;
}

int LeafPool::clone3_refused(const cgroup::Dir& leaf, int err) {
  // Other errors fall back for this child only.
  if (use_clone3_ && (err == ENOSYS || err == E2BIG || err == EINVAL)) {
    logf("clone3(CLONE_INTO_CGROUP): %s; children join their cgroup themselves", strerror(err));
    use_clone3_ = false;
  }
  return leaf.open_procs();
}

// Whether a child made cgroups of its own inside its leaf (a nested Corral
// VM does: its spawner's base). Such a leaf is not clean: reused, it would
// keep them alive until the base goes. On cgroupfs a directory's link count
// is 2 plus its subdirectories, so one fstatat tells.
bool LeafPool::has_subgroups(const cgroup::Dir& leaf) const {
  struct stat st {};
  int rc = base_fd_ ? fstatat(base_fd_.get(), std::string(leaf.name()).c_str(), &st, 0)
                    : stat(leaf.path().c_str(), &st);
  return rc < 0 || st.st_nlink > 2;
}

void LeafPool::give_back(cgroup::Dir& leaf) { release(leaf, false); }

void LeafPool::release(cgroup::Dir& leaf, bool killed) {
  if (!leaf) return;
  if (!killed && clean_.size() < kCleanLeaves && !has_subgroups(leaf)) {
    clean_.push_back(std::move(leaf));
  } else if (int rc = leaf.remove(); rc < 0) {
    // Dir::remove takes the child's own subgroups first. EBUSY after a drain that gave up; the
    // base's removal at exit sweeps it.
    remove_failed_("cannot remove cgroup %s: %s", leaf.path().c_str(), strerror(-rc));
  }
}

void LeafPool::prepare_spare() {
  if (!base_ || !clean_.empty()) return;
  cgroup::Dir leaf;
  if (make_leaf(leaf, true) == 0) clean_.push_back(std::move(leaf));
}

int LeafPool::populated(const cgroup::Dir& leaf) const {
  if (!leaf) return 0;
  return base_fd_ ? leaf.populated(base_fd_.get()) : leaf.populated();
}

void LeafPool::destroy(std::chrono::milliseconds limit) {
  if (!base_) return;
  // cgroup.kill on the base kills every leaf below it at once, escapees
  // included; then wait for them to go and remove the leaves and the base.
  if (int rc = base_.destroy(limit); rc < 0)
    logf("cannot remove cgroup %s: %s", base_.path().c_str(), strerror(-rc));
}

}  // namespace corral::spawner
