// A child's configured cgroups (see cgroup_config.h).
#include "cgroup_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "cgroup_table.h"
#include "child.h"
#include "sysfs.h"

namespace corral::spawner::cgroup {
namespace {

constexpr std::string_view kKnownV1[] = {"cpu",        "cpuacct",  "cpuset", "memory", "devices",
                                         "freezer",    "net_cls",  "blkio",  "pids",   "hugetlb",
                                         "perf_event", "net_prio", "rdma",   "misc"};

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    size_t i = s.find(sep);
    out.push_back(s.substr(0, i));
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return std::string(s);
}

std::string dirname_of(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos || slash == 0 ? "/" : p.substr(0, slash);
}

int write_file(const std::string& path, std::string_view value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, value.data(), value.size());
  if (n < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  close(fd);
  return static_cast<size_t>(n) == value.size() ? 0 : -EIO;
}

bool exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

bool file_in(const std::string& file, const void* dir) {
  return exists(*static_cast<const std::string*>(dir) + "/" + file);
}

}  // namespace

// --- parsers ------------------------------------------------------------------

void parse_v1(std::string_view mountinfo, std::string_view proc_cgroup,
              std::vector<Hierarchy>& ret) {
  ret.clear();
  for (std::string_view line : split(mountinfo, '\n')) {
    std::vector<std::string_view> f;
    for (std::string_view w : split(line, ' '))
      if (!w.empty()) f.push_back(w);
    size_t sep = 6;
    while (sep < f.size() && f[sep] != "-") sep++;
    if (sep + 3 >= f.size() || f[sep + 1] != "cgroup") continue;
    Hierarchy h;
    for (std::string_view o : split(f[sep + 3], ','))
      if (std::find(std::begin(kKnownV1), std::end(kKnownV1), o) != std::end(kKnownV1))
        h.controllers.emplace_back(o);
    if (h.controllers.empty()) continue;
    Mount m{std::string(f[4]), std::string(f[3])};
    // Our line in /proc/self/cgroup names the same controllers, in any order.
    for (std::string_view cl : split(proc_cgroup, '\n')) {
      std::vector<std::string_view> parts = split(cl, ':');
      if (parts.size() < 3) continue;
      std::vector<std::string_view> cs = split(parts[1], ',');
      if (std::find(cs.begin(), cs.end(), h.controllers[0]) == cs.end()) continue;
      std::string path(cl.substr(parts[0].size() + parts[1].size() + 2));
      if (v2_dir(m, path, h.own) == 0) {
        h.mount = m.point;
        ret.push_back(std::move(h));
      }
      break;
    }
  }
}

void discover(Hierarchies& ret) {
  ret = Hierarchies{};
  std::string mi, pc;
  if (read_file("/proc/self/mountinfo", mi) < 0 || read_file("/proc/self/cgroup", pc) < 0) return;
  Mount m;
  std::string path;
  if (parse_v2_mount(mi, m) == 0 && parse_v2_path(pc, path) == 0 &&
      v2_dir(m, path, ret.v2.own) == 0)
    ret.v2.mount = m.point;
  parse_v1(mi, pc, ret.v1);
}

std::string controller_of(std::string_view file) {
  return cgroup_table::v2_controller(file.substr(0, file.find('.')));
}

std::string v1_name(std::string_view c) { return cgroup_table::v1_controller(c); }

std::set<std::string> words(std::string_view text) {
  std::set<std::string> out;
  for (std::string_view line : split(text, '\n'))
    for (std::string_view w : split(line, ' '))
      if (!w.empty()) out.emplace(w);
  return out;
}

// --- the v1 backend -------------------------------------------------------------

int to_v1(const std::vector<Write>& v2, std::vector<Write>& ret, std::string& why,
          bool (*dir_has)(const std::string&, const void*), const void* ctx) {
  namespace table = corral::cgroup_table;
  ret.clear();
  // memsw is memory + swap: the swap limit is written after the memory
  // limit, from the spec's memory limit rather than the leaf's.
  const Write* swap_max = nullptr;
  for (const Write& w : v2) {
    const table::Entry* e = table::find(w.file);
    if (!e) {
      ret.push_back(w);  // same name on v1 (pids.max, cpuset.*), or a raw v1 file
      continue;
    }
    if (e->kind == table::Kind::kSwap) {
      swap_max = &w;
      continue;
    }
    table::Files have;
    for (size_t i = 0; i < have.size(); i++)
      if (!e->v1[i].empty() && dir_has && dir_has(std::string(e->v1[i]), ctx)) have[i].emplace();
    std::vector<Write> out;
    if (int rc = table::to_v1(*e, w.value, have, out, why); rc < 0)
      return rc == -ENOENT ? -EOPNOTSUPP : rc;  // the host's v1 leaf lacks the file
    ret.insert(ret.end(), out.begin(), out.end());
  }
  if (swap_max) {
    const table::Entry& e = *table::find(swap_max->file);
    table::Files limit;  // the memory limit written above (memory.max or given raw)
    for (const Write& w : ret)
      if (w.file == e.v1[1]) limit[1] = w.value;
    std::vector<Write> out;
    if (int rc = table::to_v1(e, swap_max->value, limit, out, why); rc < 0) return rc;
    ret.insert(ret.end(), out.begin(), out.end());
  }
  return 0;
}

// --- the plan -------------------------------------------------------------------

int make_plan(const CgroupSpec& spec, const std::set<std::string>& v2_offered, const Hierarchies& h,
              Plan& ret, std::string& why) {
  ret = Plan{};
  // Each entry: the controller as named, and the writes it carries.
  std::vector<std::pair<std::string, std::vector<Write>>> wanted;
  auto entry = [&](const std::string& c) -> std::vector<Write>& {
    for (auto& [name, ws] : wanted)
      if (name == c) return ws;
    wanted.emplace_back(c, std::vector<Write>{});
    return wanted.back().second;
  };
  for (const std::string& c : spec.controllers) (void)entry(c);
  for (const auto& [file, value] : spec.settings) {
    std::string prefix = file.substr(0, file.find('.'));
    if (prefix == file || prefix.empty()) {
      why = "cgroup file " + file + " names no controller";
      return -EINVAL;
    }
    if (prefix == "cgroup") {
      why = "cgroup file " + file + " is the cgroup's own, not a setting";
      return -EINVAL;
    }
    entry(prefix).push_back({file, value});
  }
  for (auto& [c, writes] : wanted) {
    std::string v2c = cgroup_table::v2_controller(c);
    bool v1_only = c == "blkio" || c == "cpuacct";
    if (!h.v2.own.empty() && v2_offered.count(v2c) && !v1_only) {
      if (std::find(ret.v2_controllers.begin(), ret.v2_controllers.end(), v2c) ==
          ret.v2_controllers.end())
        ret.v2_controllers.push_back(v2c);
      ret.v2.insert(ret.v2.end(), writes.begin(), writes.end());
      continue;
    }
    std::string v1c = v1_only ? c : v1_name(c);
    size_t i = 0;
    while (i < h.v1.size() && std::find(h.v1[i].controllers.begin(), h.v1[i].controllers.end(),
                                        v1c) == h.v1[i].controllers.end())
      i++;
    if (i == h.v1.size()) {
      why = "no cgroup hierarchy offers the " + c + " controller";
      if (!h.v2.own.empty())
        why += " (enable +" + v2c + " in " + dirname_of(h.v2.own) + "/cgroup.subtree_control)";
      return -EOPNOTSUPP;
    }
    auto it = std::find_if(ret.v1.begin(), ret.v1.end(),
                           [&](const Plan::V1& v) { return v.hierarchy == i; });
    if (it == ret.v1.end()) {
      ret.v1.push_back({i, {}});
      it = ret.v1.end() - 1;
    }
    it->writes.insert(it->writes.end(), writes.begin(), writes.end());
  }
  return 0;
}

// --- Placer -----------------------------------------------------------------------

void Placer::init(pid_t self, Hierarchies h, std::string v2_base, std::string base_why) {
  self_ = self;
  h_ = std::move(h);
  v2_base_ = std::move(v2_base);
  base_why_ = std::move(base_why);
  v1_bases_.clear();
  v1_bases_.resize(h_.v1.size());
  // The v1 bases of spawners that were SIGKILLed, as for the v2 base.
  for (const Hierarchy& v1 : h_.v1)
    (void)remove_stale_bases(v1.own, self_, std::chrono::seconds(1));
}

int Placer::v1_base(size_t i, std::string& ret, std::string& why) {
  if (!v1_bases_[i]) {
    const Hierarchy& h = h_.v1[i];
    std::string path = h.own + "/corral." + std::to_string(self_);
    Dir d;
    if (int rc = Dir::make(path, d); rc < 0) {
      why = "cannot create " + path + ": " + strerror(-rc) + denied_fix(h.own, rc);
      return rc;
    }
    if (made) made(path);
    // A v1 cpuset group starts with no cpus and mems: no task may join it.
    if (std::find(h.controllers.begin(), h.controllers.end(), "cpuset") != h.controllers.end()) {
      for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
        std::string v;
        if (int rc = read_file(h.own + "/" + f, v);
            rc < 0 || (rc = write_file(path + "/" + f, trim(v))) < 0) {
          why = std::string("cannot copy ") + f + " into " + path + ": " + strerror(-rc);
          return rc;
        }
      }
    }
    v1_bases_[i] = std::move(d);
  }
  ret = v1_bases_[i].path();
  return 0;
}

int Placer::parent_of(const Hierarchy& h, const CgroupSpec& spec, const std::string& ours,
                      std::string& parent, std::string& why) {
  const std::string& given = spec.path.empty() ? spec.base : spec.path;
  if (given.empty()) {
    parent = ours;
    return 0;
  }
  // Relative to our own group; absolute from the hierarchy's root.
  std::string dir = given[0] == '/' ? h.mount + given : h.own + "/" + given;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  parent = spec.path.empty() ? dir : dirname_of(dir);
  if (!exists(parent)) {
    why = std::string(spec.path.empty() ? "cgroup_base " : "the parent of cgroup_path ") + parent +
          " does not exist";
    return -ENOENT;
  }
  // Ours are kept: the base may be the VM's own group, beside our bases.
  if (spec.path.empty() && swept_.insert(parent).second)
    (void)remove_stale_bases(parent, self_, std::chrono::seconds(1), false);
  return 0;
}

int Placer::make_leaf(const std::string& parent, const CgroupSpec& spec, const Hierarchy& h,
                      Dir& ret, std::string& why) {
  std::string path;
  if (!spec.path.empty()) {
    path = spec.path[0] == '/' ? h.mount + spec.path : h.own + "/" + spec.path;
    while (path.size() > 1 && path.back() == '/') path.pop_back();
  } else if (!spec.base.empty()) {
    // Named after us, so that a later spawner can tell ours are stale.
    path = parent + "/corral." + std::to_string(self_) + "." + std::to_string(next_++);
  } else {
    path = parent + "/x" + std::to_string(next_++);
  }
  if (int rc = Dir::make(path, ret); rc < 0) {
    why = rc == -EEXIST && !spec.path.empty()
              ? "cgroup_path " + path + " already exists (it must be the child's own)"
              : "cannot create " + path + ": " + strerror(-rc) + denied_fix(parent, rc);
    return rc;
  }
  if (made) made(path);
  if (std::find(h.controllers.begin(), h.controllers.end(), "cpuset") != h.controllers.end()) {
    for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
      std::string v;
      if (int rc = read_file(parent + "/" + f, v);
          rc < 0 || (rc = write_file(path + "/" + f, trim(v))) < 0) {
        why = std::string("cannot copy ") + f + " into " + path + ": " + strerror(-rc);
        return rc;
      }
    }
  }
  return 0;
}

int Placer::enable_v2(const std::vector<std::string>& controllers, const std::string& parent,
                      bool ours, std::string& why) {
  std::string text;
  if (int rc = read_file(parent + "/cgroup.subtree_control", text); rc < 0) {
    why = "cannot read " + parent + "/cgroup.subtree_control: " + strerror(-rc);
    return rc;
  }
  std::set<std::string> enabled = words(text);
  std::set<std::string> offered;
  if (ours && read_file(parent + "/cgroup.controllers", text) == 0) offered = words(text);
  for (const std::string& c : controllers) {
    if (enabled.count(c)) continue;
    if (!ours || !offered.count(c)) {
      // Not a group of ours, or ours without the controller: the fix is
      // the owner's.
      why = "the " + c + " controller is not available: enable +" + c + " in " +
            (ours ? dirname_of(parent) : parent) + "/cgroup.subtree_control";
      return -EOPNOTSUPP;
    }
    if (int rc = write_file(parent + "/cgroup.subtree_control", "+" + c); rc < 0) {
      why = "cannot enable +" + c + " in " + parent + "/cgroup.subtree_control: " + strerror(-rc) +
            denied_fix(parent, rc);
      return rc;
    }
  }
  return 0;
}

int Placer::place(const CgroupSpec& spec, Placement& ret, std::string& why) {
  std::set<std::string> offered;
  if (!h_.v2.own.empty()) {
    std::string text;
    if (read_file(h_.v2.own + "/cgroup.controllers", text) == 0) offered = words(text);
  }
  Plan plan;
  if (int rc = make_plan(spec, offered, h_, plan, why); rc < 0) return rc;

  bool custom = !spec.base.empty() || !spec.path.empty();
  if (!h_.v2.own.empty() && (!plan.v2_controllers.empty() || custom)) {
    if (!custom && v2_base_.empty()) {
      why = "no cgroup v2 base: " + (base_why_.empty() ? "see the spawner's log" : base_why_);
      return -ENOENT;
    }
    std::string parent;
    if (int rc = parent_of(h_.v2, spec, v2_base_, parent, why); rc < 0) return rc;
    if (int rc = enable_v2(plan.v2_controllers, parent, !custom, why); rc < 0) return rc;
    if (int rc = make_leaf(parent, spec, h_.v2, ret.v2, why); rc < 0) return rc;
    for (const Write& w : plan.v2) {
      if (int rc = write_file(ret.v2.path() + "/" + w.file, w.value); rc < 0) {
        why = "cannot write \"" + w.value + "\" to " + ret.v2.path() + "/" + w.file + ": " +
              strerror(-rc);
        return rc;
      }
    }
  }
  if (plan.v1.size() > kMaxJoinProcs) {
    why =
        "more cgroup v1 hierarchies than a child may join (" + std::to_string(kMaxJoinProcs) + ")";
    return -E2BIG;
  }
  for (const Plan::V1& p : plan.v1) {
    const Hierarchy& h = h_.v1[p.hierarchy];
    std::string ours, parent;
    if (!custom)
      if (int rc = v1_base(p.hierarchy, ours, why); rc < 0) return rc;
    if (int rc = parent_of(h, spec, ours, parent, why); rc < 0) return rc;
    Dir leaf;
    if (int rc = make_leaf(parent, spec, h, leaf, why); rc < 0) return rc;
    std::vector<Write> writes;
    std::string dir = leaf.path();
    if (int rc = to_v1(p.writes, writes, why, file_in, &dir); rc < 0) return rc;
    for (const Write& w : writes) {
      if (int rc = write_file(dir + "/" + w.file, w.value); rc < 0) {
        why = "cannot write \"" + w.value + "\" to " + dir + "/" + w.file + ": " + strerror(-rc);
        return rc;
      }
    }
    int fd = leaf.open_procs();
    if (fd < 0) {
      why = "cannot open " + dir + "/cgroup.procs: " + strerror(-fd);
      return fd;
    }
    ret.v1_procs.emplace_back(fd);
    ret.v1.push_back(std::move(leaf));
  }
  return 0;
}

void Placer::sweep() {
  for (const Hierarchy& v1 : h_.v1)
    (void)remove_stale_bases(v1.own, self_, std::chrono::milliseconds(200), false);
}

void Placer::destroy(std::chrono::milliseconds limit) {
  for (Dir& d : v1_bases_) (void)d.destroy(limit);
}

int64_t oom_kills(const std::string& dir) {
  std::string text;
  if (read_file(dir + "/memory.events", text) < 0 &&
      read_file(dir + "/memory.oom_control", text) < 0)
    return 0;
  for (std::string_view line : split(text, '\n')) {
    constexpr std::string_view kKey = "oom_kill ";
    if (line.substr(0, kKey.size()) == kKey)
      return strtoll(std::string(line.substr(kKey.size())).c_str(), nullptr, 10);
  }
  return 0;
}

}  // namespace corral::spawner::cgroup
