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

// A user or group as the request gives it: a number, or a name that the
// spawner looks up (getpwnam_r/getgrnam_r) before the clone.
struct IdRef {
  uint32_t id = 0;   // when name is empty
  std::string name;  // not empty: look it up
};

// One resource limit (setrlimit): RLIM_INFINITY for infinity.
struct RlimitSpec {
  int resource = 0;  // RLIMIT_*
  uint64_t soft = 0;
  uint64_t hard = 0;
};

// Who the child runs as and under which limits; nothing is changed for what
// is absent. See resolve_credentials (child.h) for the defaults a uid brings.
struct IdentitySpec {
  std::optional<IdRef> uid;
  std::optional<IdRef> gid;
  std::optional<std::vector<IdRef>> groups;
  std::vector<RlimitSpec> rlimits;  // at most one per resource
  std::optional<int> nice;          // -20..19
  std::optional<unsigned> umask;    // 0..0777
  bool no_new_privs = false;
  bool any() const {
    return uid || gid || groups || !rlimits.empty() || nice || umask || no_new_privs;
  }
};

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

// Which memory.events counts the owner subscribed to (corral_opts'
// memory_events): frame::kMemoryEvent* bits. `all` asks for every count the
// child's memory hierarchy has; otherwise each key named must exist there.
struct MemoryEventsSpec {
  uint32_t keys = 0;  // 0: not subscribed
  bool all = false;
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
  IdentitySpec identity;
  CgroupSpec cgroup;
  MemoryEventsSpec memory_events;
  // How long the start report (the Fds frame) may be held back after the
  // exec, in ms; 0: sent at once. A child that exits meanwhile is reported
  // with its Exit, in one wake-up of the owner's VM.
  int report_delay_ms = 0;
};

// The RLIMIT_* number of a resource's name in the request ("nofile", "as",
// ...), or -1.
int rlimit_resource(std::string_view name);

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
