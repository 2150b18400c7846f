// cgroup v2 for the spawner: finding the unified hierarchy and our place in
// it, and making, killing and removing the spawner's base and per-child leaf
// cgroups. No controller is ever enabled: a cgroup with an empty
// subtree_control may hold both processes and children, so this works in any
// cgroup we can write to, on pure v2 and on hybrid hosts alike.
//
// Functions return 0 (or a count) on success and -errno on failure.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

namespace corral::spawner::cgroup {

// --- parsers (they take file contents, so tests can feed samples) -----------

// A cgroup2 mount: where it is mounted and which cgroup is its root.
struct Mount {
  std::string point;  // e.g. "/sys/fs/cgroup" or "/sys/fs/cgroup/unified"
  std::string root;   // usually "/"
};

// Finds the first mount of fstype cgroup2 in /proc/self/mountinfo text
// (octal escapes such as \040 are decoded). -ENOENT when there is none.
int parse_v2_mount(std::string_view mountinfo, Mount& ret);

// Finds the v2 line "0::/path" in /proc/self/cgroup text. -ENOENT when
// there is none.
int parse_v2_path(std::string_view proc_cgroup, std::string& ret);

// The directory of cgroup `path` under mount m. -ENOENT when path lies
// outside the mounted subtree.
int v2_dir(const Mount& m, std::string_view path, std::string& ret);

// cgroup.events text: 1 if "populated 1", 0 if "populated 0", else -EBADMSG.
int parse_populated(std::string_view events);

// --- the live system ---------------------------------------------------------

// The directory of this process's own v2 cgroup, from /proc/self/mountinfo
// and /proc/self/cgroup.
int own_v2_dir(std::string& ret);

// Whether the cgroup at dir (or any cgroup below it) has live processes.
// Zombies do not count. 1, 0 or -errno. A v1 group (no cgroup.events) is
// judged by its cgroup.procs and those below it.
// With `at` a directory fd, dir is relative to it: a shorter path walk.
int populated(const std::string& dir, int at = AT_FDCWD);

// SIGKILLs every process in dir and below, by cgroup.kill, or, on kernels
// before 5.14 that lack it, by signalling each pid in each cgroup.procs.
int kill_all(const std::string& dir);

// Removes dir and every cgroup below it, deepest first. -EBUSY while a
// cgroup still has processes.
int remove_tree(const std::string& dir);

// kill, then wait up to `limit` for dir to be unpopulated, then remove_tree.
int destroy(const std::string& dir, std::chrono::milliseconds limit);

// Destroys every "corral.<pid>" or "corral.<pid>.<n>" (a leaf in a
// cgroup_base) directly in `parent` whose pid is not alive
// (a spawner that was SIGKILLed) or is `self` (so cannot be ours yet).
// Returns how many were removed, or -errno if parent cannot be read.
// With self_is_stale false, `self`'s are kept (a running spawner's sweep).
int remove_stale_bases(const std::string& parent, pid_t self, std::chrono::milliseconds limit,
                       bool self_is_stale = true);

// An owned cgroup directory. The destructor rmdirs it (quietly failing with
// EBUSY if processes are left: a spawner's base sweeps those up).
class Dir {
 public:
  Dir() = default;
  ~Dir() { (void)remove(); }
  Dir(Dir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  Dir& operator=(Dir&& o) noexcept;
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;

  // mkdir(path) and take ownership of it. -EEXIST if it exists.
  static int make(std::string path, Dir& ret);

  explicit operator bool() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  // Opens cgroup.procs for writing (O_CLOEXEC): a process that writes "0"
  // to the fd moves itself in. Returns the fd or -errno.
  int open_procs() const;
  int populated() const { return cgroup::populated(path_); }
  // The same, through `parent`, an fd of the directory that holds this one.
  int populated(int parent) const { return cgroup::populated(std::string(name()), parent); }
  // The last component of path().
  std::string_view name() const;
  int kill() const { return kill_all(path_); }

  // rmdir, giving up ownership on success (and on ENOENT). 0 or -errno.
  int remove();
  // kill, wait, remove_tree; gives up ownership. 0 or -errno.
  int destroy(std::chrono::milliseconds limit);

 private:
  std::string path_;
};

// Makes the spawner's base <own v2 cgroup>/corral.<self>, after removing
// stale bases beside it, and checks that a forked child can move itself into
// a cgroup below it. On failure returns -errno and sets why to a sentence
// for the log (naming the group to delegate when permission was refused).
int make_base(pid_t self, Dir& ret, std::string& why);

// What to tell a user refused (err EACCES or EPERM, as -errno or errno) a
// change to group `dir`, which a non-root VM may only change once it is
// delegated to it: "; delegate <dir> to uid N (systemd Delegate=yes) or run
// as root". Empty for other errors and for root (whose refusals come from
// elsewhere: a read-only mount, cgroup namespaces).
std::string denied_fix(const std::string& dir, int err);

}  // namespace corral::spawner::cgroup
