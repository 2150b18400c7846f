// What a spawner started here would get from cgroups (see cgroup_info.h).
#include "cgroup_info.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "sysfs.h"

namespace corral::spawner::cgroup {
namespace {

bool may_write(const std::string& path, bool dir, uid_t uid, gid_t gid,
               const std::vector<gid_t>& groups) {
  struct stat st {};
  if (stat(path.c_str(), &st) < 0) return false;
  unsigned bits;
  if (st.st_uid == uid)
    bits = (st.st_mode >> 6) & 7;
  else if (st.st_gid == gid || std::find(groups.begin(), groups.end(), st.st_gid) != groups.end())
    bits = (st.st_mode >> 3) & 7;
  else
    bits = st.st_mode & 7;
  // A directory needs search as well as write for mkdir.
  return (bits & 2) != 0 && (!dir || (bits & 1) != 0);
}

// An Erlang binary literal: printable ASCII as it is, the rest as octal
// escapes (paths may hold any byte but '/' and NUL).
std::string binary(const std::string& s) {
  std::string out = "<<\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char esc[5];
      snprintf(esc, sizeof esc, "\\%03o", c);
      out += esc;
    }
  }
  return out + "\">>";
}

// Controller names become atoms; the kernel's are [a-z0-9_]. Anything else
// is left out rather than quoted.
bool atom_safe(const std::string& s) {
  return !s.empty() &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos;
}

std::string atoms(const std::vector<std::string>& names) {
  std::string out = "[";
  for (const std::string& n : names) {
    if (!atom_safe(n)) continue;
    if (out.size() > 1) out += ", ";
    out += "'" + n + "'";
  }
  return out + "]";
}

std::string group_term(const GroupInfo& g) {
  return "#{mount => " + binary(g.mount) + ", group => " + binary(g.group) + ", controllers => " +
         atoms(g.controllers) + ", writable => " + (g.writable ? "true" : "false") + "}";
}

}  // namespace

bool writable_by(const std::string& dir, uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  if (uid == 0)
    return access(dir.c_str(), W_OK | X_OK) == 0 &&
           access((dir + "/cgroup.procs").c_str(), W_OK) == 0;
  return may_write(dir, true, uid, gid, groups) &&
         may_write(dir + "/cgroup.procs", false, uid, gid, groups);
}

void describe(const Hierarchies& h, uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
              Info& ret) {
  ret = Info{};
  ret.uid = uid;
  if (!h.v2.own.empty()) {
    ret.has_v2 = true;
    ret.v2.mount = h.v2.mount;
    ret.v2.group = h.v2.own;
    std::string text;
    if (read_file(h.v2.own + "/cgroup.controllers", text) == 0)
      for (const std::string& c : words(text)) ret.v2.controllers.push_back(c);
    ret.v2.writable = writable_by(h.v2.own, uid, gid, groups);
  }
  for (const Hierarchy& v1 : h.v1) {
    GroupInfo g{v1.mount, v1.own, v1.controllers, writable_by(v1.own, uid, gid, groups)};
    ret.v1.push_back(std::move(g));
  }
}

void gather(Info& ret) {
  Hierarchies h;
  discover(h);
  std::vector<gid_t> groups;
  int n = getgroups(0, nullptr);
  if (n > 0) {
    groups.resize(static_cast<size_t>(n));
    n = getgroups(n, groups.data());
    groups.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  describe(h, geteuid(), getegid(), groups, ret);
  Dir base;
  ret.base = make_base(getpid(), base, ret.base_why);
  // The Dir's destructor removes the base again.
}

std::string to_term(const Info& info) {
  std::string out = "#{uid => " + std::to_string(info.uid) + ",\n  v2 => ";
  out += info.has_v2 ? group_term(info.v2) : "none";
  out += ",\n  base => ";
  out += info.base == 0 ? "ok" : "{error, " + binary(info.base_why) + "}";
  out += ",\n  v1 => [";
  for (size_t i = 0; i < info.v1.size(); i++)
    out += (i ? ",\n    " : "\n    ") + group_term(info.v1[i]);
  out += "],\n  controllers => #{";
  // Where a child's cgroup option would put each: v2 when offered there
  // (make_plan's rule), else the v1 hierarchy that has it.
  std::map<std::string, const char*> where;
  if (info.has_v2)
    for (const std::string& c : info.v2.controllers) where[c] = "v2";
  for (const GroupInfo& g : info.v1)
    for (const std::string& c : g.controllers) where.emplace(c, "v1");
  bool first = true;
  for (const auto& [c, w] : where) {
    if (!atom_safe(c)) continue;
    out += (first ? "'" : ", '") + c + "' => " + w;
    first = false;
  }
  return out + "}}.\n";
}

}  // namespace corral::spawner::cgroup
