// A child's configured cgroups: where each setting of a CgroupSpec goes
// (the v2 tree, or the v1 hierarchy that holds its controller), what it is
// called there, and the leaves that carry it.
//
// One mechanism serves every option form: corral_opts turns the `cgroup`
// map, `cgroup_sets` and `cgroup_controllers` into v2 file names and values;
// here each controller goes to v2 when our v2 group offers it, else to a v1
// hierarchy that has it, where the file is translated (the "backend").
//
// Every group made here lies beneath the VM's own group in its hierarchy;
// groups we did not make are only read (a missing controller there is an
// error that names the fix). Functions return 0 or -errno.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cgroup.h"
#include "cgroup_table.h"
#include "fd.h"
#include "options.h"

namespace corral::spawner::cgroup {

// One mounted hierarchy and this process's group in it.
struct Hierarchy {
  std::vector<std::string> controllers;  // v1: "memory", "cpu", ...; v2: empty
  std::string mount;                     // where it is mounted
  std::string own;                       // our group's directory
};

struct Hierarchies {
  Hierarchy v2;               // own empty: no v2 tree
  std::vector<Hierarchy> v1;  // each mounted v1 hierarchy we are in
};

// Every v1 hierarchy (fstype cgroup, with a controller in its options) of
// /proc/self/mountinfo text, with our group from /proc/self/cgroup text.
// Named hierarchies (name=systemd) carry no controller and are skipped.
void parse_v1(std::string_view mountinfo, std::string_view proc_cgroup,
              std::vector<Hierarchy>& ret);

// The live system's hierarchies (v2 when mounted, v1 as parse_v1).
void discover(Hierarchies& ret);

// The controller a v2 interface file belongs to: its name up to the first
// '.' ("memory.max" -> "memory"). v1 names map to v2 ones ("blkio" -> "io").
std::string controller_of(std::string_view file);

// A v1 hierarchy's name for a v2 controller ("io" -> "blkio").
std::string v1_name(std::string_view v2_controller);

using Write = corral::cgroup_table::Write;

// The v1 files and values for the v2 settings of one controller, in order,
// through the table of common/cgroup_table.h: a v2 file it has is
// translated (memory.max -> memory.limit_in_bytes, cpu.max ->
// cpu.cfs_period_us and cpu.cfs_quota_us, ...), or is an error naming it
// when v1 has no equivalent (memory.high, cpu.idle, ...); any other name is
// written as it is (the same on v1, or a raw v1 file such as
// memory.limit_in_bytes). memory.swap.max comes last, from the spec's
// memory.max (v1's memsw is memory + swap). `dir_has` says whether the leaf
// has a file, for io.weight (blkio.bfq.weight or blkio.weight).
int to_v1(const std::vector<Write>& v2, std::vector<Write>& ret, std::string& why,
          bool (*dir_has)(const std::string& file, const void* ctx) = nullptr,
          const void* ctx = nullptr);

// Where a spec's controllers go. v2_offered: the controllers our v2 group
// has (its cgroup.controllers). Each controller the spec needs (from its
// settings and controllers) goes to v2 when offered there, else to the
// first v1 hierarchy that has it, else it is an error naming it.
struct Plan {
  std::vector<std::string> v2_controllers;  // to enable above the leaf
  std::vector<Write> v2;
  struct V1 {
    size_t hierarchy;           // index into Hierarchies::v1
    std::vector<Write> writes;  // still in v2 terms; to_v1 translates
  };
  std::vector<V1> v1;
};
int make_plan(const CgroupSpec& spec, const std::set<std::string>& v2_offered, const Hierarchies& h,
              Plan& ret, std::string& why);

// The whitespace-separated words of a cgroup.controllers or
// cgroup.subtree_control file.
std::set<std::string> words(std::string_view text);

// A child's groups: its v2 leaf (empty when it takes the pool's) and its
// v1 leaves with their cgroup.procs, for the child to join before exec.
struct Placement {
  Dir v2;
  std::vector<Dir> v1;
  std::vector<unique_fd> v1_procs;
};

// Makes the leaves of configured children and the spawner's v1 bases
// (<own v1 group>/corral.<pid>, made on first use), and removes them.
class Placer {
 public:
  // v2_base: the spawner's v2 base (corral.<pid>), or empty without one,
  // and then base_why, why there is none (part of a v2 placement's error).
  void init(pid_t self, Hierarchies h, std::string v2_base, std::string base_why = {});
  const Hierarchies& hierarchies() const { return h_; }

  // Makes spec's leaves and writes its settings. The v2 leaf is made only
  // when the spec puts a controller on v2 or names a base or path; else
  // ret.v2 stays empty and the child takes a pool leaf. 0, or -errno with
  // why naming the group, file or controller (and the fix, where there is
  // one).
  int place(const CgroupSpec& spec, Placement& ret, std::string& why);

  // Removes the v1 bases of dead spawners beside ours. A child that ran a
  // Corral VM of its own left one when its leaf was killed: that killed
  // its spawner too, before it could clean up; its v2 base went with the
  // leaf, but its v1 bases lie beside ours.
  void sweep();

  // Kills, waits up to limit for, and removes the v1 bases.
  void destroy(std::chrono::milliseconds limit);

  // Called with each group made, before anything is written to it: the
  // tests' fake cgroup trees make the interface files the kernel would.
  std::function<void(const std::string& dir)> made;

 private:
  int v1_base(size_t i, std::string& ret, std::string& why);
  int parent_of(const Hierarchy& h, const CgroupSpec& spec, const std::string& ours,
                std::string& parent, std::string& why);
  int make_leaf(const std::string& parent, const CgroupSpec& spec, const Hierarchy& h, Dir& ret,
                std::string& why);
  int enable_v2(const std::vector<std::string>& controllers, const std::string& parent, bool ours,
                std::string& why);

  pid_t self_ = 0;
  Hierarchies h_;
  std::string v2_base_;
  std::string base_why_;
  std::vector<Dir> v1_bases_;    // parallel to h_.v1; made on first use
  std::set<std::string> swept_;  // custom bases whose stale leaves were removed
  uint64_t next_ = 0;
};

// OOM kills recorded in a leaf: memory.events' oom_kill (v2) or
// memory.oom_control's oom_kill (v1). 0 when there is no such file.
int64_t oom_kills(const std::string& dir);

}  // namespace corral::spawner::cgroup
