// What a spawner started here would get from cgroups: the v2 group and its
// controllers, the v1 hierarchies, which of them this uid may write to
// (delegated to it, or root), and whether a v2 base and per-child leaves can
// be made. `corral_spawner --cgroup-info` prints it as an Erlang term for
// corral:cgroup_info/0.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "cgroup_config.h"

namespace corral::spawner::cgroup {

// Whether a process with uid, gid and supplementary groups may change the
// cgroup at dir: make groups in it (the directory) and move processes into
// it (its cgroup.procs), as systemd's Delegate= grants. Judged by owner
// and mode bits; for uid 0 by access(2), which also catches a read-only
// mount.
bool writable_by(const std::string& dir, uid_t uid, gid_t gid, const std::vector<gid_t>& groups);

struct GroupInfo {
  std::string mount, group;              // the hierarchy's mount, our group's directory
  std::vector<std::string> controllers;  // v2: the group's cgroup.controllers
  bool writable = false;
};

struct Info {
  uid_t uid = 0;
  bool has_v2 = false;
  GroupInfo v2;
  // make_base's result: 0 with a base (so per-child leaves), else -errno
  // and its sentence.
  int base = 0;
  std::string base_why;
  std::vector<GroupInfo> v1;
};

// Fills ret from hierarchies h for uid/gid/groups; the v2 group's
// controllers are read from its cgroup.controllers. The base is not tried.
void describe(const Hierarchies& h, uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
              Info& ret);

// The live system, for this process, with make_base tried (its base and
// probe are removed again).
void gather(Info& ret);

// ret as the text of an Erlang map term ending in ".\n":
// #{uid => N, v2 => #{mount, group, controllers, writable} | none,
//   base => ok | {error, Why}, v1 => [#{mount, group, controllers, writable}],
//   controllers => #{Name => v2 | v1}} (each controller where a child's
// cgroup option would put it: v2 when the v2 group offers it).
std::string to_term(const Info& info);

}  // namespace corral::spawner::cgroup
