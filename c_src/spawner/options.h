// Decodes a spawn request (term_to_binary of an option map) into a SpawnSpec.
#pragma once

#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace corral::spawner {

enum class StdinMode { Pipe, Null };
enum class StdoutMode { Pipe, Null };
// Inherit: fd 2 stays the spawner's own stderr, which is the VM's, as
// System.cmd/3 leaves it.
enum class StderrMode { Pipe, Stdout, Null, Inherit };

// The child's cgroups beyond the default leaf (corral_opts' cgroup,
// cgroup_base, cgroup_path, cgroup_controllers and cgroup_sets, all in one
// shape). Settings are cgroup v2 interface file names and values, in the
// order they are written; the spawner translates them on v1 hierarchies.
struct CgroupSpec {
  std::string base;  // leaves go beneath this group; "" = the spawner's own base
  std::string path;  // the child's leaf itself, made for it; "" = none
  std::vector<std::string> controllers;                       // needed even unset
  std::vector<std::pair<std::string, std::string>> settings;  // file, value
  bool empty() const {
    return base.empty() && path.empty() && controllers.empty() && settings.empty();
  }
};

struct SpawnSpec {
  std::string path;               // absolute path of the executable
  std::vector<std::string> argv;  // argv[0] first, never empty
  std::vector<std::string> env;   // complete environment, "KEY=VALUE"
  std::optional<std::string> cd;  // working directory, if any
  StdinMode in = StdinMode::Pipe;
  StdoutMode out = StdoutMode::Pipe;
  StderrMode err = StderrMode::Pipe;
  int64_t kill_timeout_ms = 5000;
  int stop_signal = SIGTERM;
  int pipe_size = 0;  // 0 = kernel default
  CgroupSpec cgroup;
};

// Decodes buf, which must hold exactly one external term (with the version
// byte): the request map corral_opts builds (atom keys). Never reads outside
// buf. Returns true and fills spec, or false and sets error to a message that
// names the offending key (for logs and tests; on the wire it is only EINVAL).
bool decode_spawn_spec(std::string_view buf, SpawnSpec& spec, std::string& error);

// Makes spec.cd absolute against cwd, the VM's working directory (which the
// driver sends with each request): no cd becomes cwd, a relative one is
// taken from cwd, an absolute one stays. An empty cwd changes nothing.
void resolve_cd(SpawnSpec& spec, std::string_view cwd);

}  // namespace corral::spawner
