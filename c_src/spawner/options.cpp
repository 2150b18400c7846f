// Decodes a spawn request (term_to_binary of an option map) into a SpawnSpec.
//
// ei's decoders trust the buffer, so every read is preceded by a bounds check
// that computes the encoded size of the term from its tag and length fields.
#include "options.h"

#include <ei.h>
#include <sys/resource.h>

#include <climits>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>

#include "frame.h"

namespace corral::spawner {
namespace {

class Reader {
 public:
  explicit Reader(std::string_view b) : buf_(b.data()), len_(b.size()) {}

  bool at_end() const { return static_cast<size_t>(idx_) == len_; }

  // Tag of the next term, or -1 at the end of the buffer.
  int peek() const { return have(1) ? static_cast<unsigned char>(buf_[idx_]) : -1; }

  bool version() {
    int v;
    return have(1) && ei_decode_version(buf_, &idx_, &v) == 0;
  }

  bool map_header(int& arity) {
    return peek() == ERL_MAP_EXT && have(5) && ei_decode_map_header(buf_, &idx_, &arity) == 0;
  }

  bool atom(std::string& out) {
    size_t hdr;
    switch (peek()) {
      case ERL_ATOM_EXT:
      case ERL_ATOM_UTF8_EXT:
        hdr = 3;
        break;
      case ERL_SMALL_ATOM_EXT:
      case ERL_SMALL_ATOM_UTF8_EXT:
        hdr = 2;
        break;
      default:
        return false;
    }
    if (!have(hdr) || !have(hdr + be(1, hdr - 1))) return false;
    char tmp[MAXATOMLEN_UTF8];
    if (ei_decode_atom_as(buf_, &idx_, tmp, sizeof tmp, ERLANG_UTF8, nullptr, nullptr) < 0)
      return false;
    out = tmp;
    return true;
  }

  bool binary(std::string& out) {
    if (peek() != ERL_BINARY_EXT || !have(5)) return false;
    size_t n = be(1, 4);
    if (!have(5 + n)) return false;
    out.resize(n);
    long got;
    return ei_decode_binary(buf_, &idx_, out.data(), &got) >= 0 && static_cast<size_t>(got) == n;
  }

  bool integer(long& v) {
    size_t need;
    switch (peek()) {
      case ERL_SMALL_INTEGER_EXT:
        need = 2;
        break;
      case ERL_INTEGER_EXT:
        need = 5;
        break;
      case ERL_SMALL_BIG_EXT:
        if (!have(2)) return false;
        need = 3 + be(1, 1);
        break;
      case ERL_LARGE_BIG_EXT:
        if (!have(5)) return false;
        need = 6 + be(1, 4);
        break;
      default:
        return false;
    }
    return have(need) && ei_decode_long(buf_, &idx_, &v) == 0;
  }

  // A proper list's header: LIST_EXT (call list_tail after the elements) or
  // NIL_EXT (arity 0, nothing more to read).
  bool list_header(int& arity, bool& nil) {
    int tag = peek();
    if (tag == ERL_NIL_EXT) {
      nil = true;
      arity = 0;
      idx_++;
      return true;
    }
    nil = false;
    return tag == ERL_LIST_EXT && have(5) && ei_decode_list_header(buf_, &idx_, &arity) == 0 &&
           arity >= 0;
  }

  // The tail of a LIST_EXT must be [] (no improper lists).
  bool list_tail() {
    if (peek() != ERL_NIL_EXT) return false;
    idx_++;
    return true;
  }

  // A list of integers 0..255, which term_to_binary encodes as STRING_EXT.
  bool byte_list(std::string& out) {
    if (peek() != ERL_STRING_EXT || !have(3)) return false;
    size_t n = be(1, 2);
    if (!have(3 + n)) return false;
    out.assign(buf_ + idx_ + 3, n);
    idx_ += static_cast<int>(3 + n);
    return true;
  }

  // A tuple of up to 255 elements (SMALL_TUPLE_EXT).
  bool tuple_header(int& arity) {
    return peek() == ERL_SMALL_TUPLE_EXT && have(2) &&
           ei_decode_tuple_header(buf_, &idx_, &arity) == 0;
  }

 private:
  bool have(size_t n) const { return n <= len_ - static_cast<size_t>(idx_); }

  // Big-endian unsigned of `bytes` bytes at idx_ + off; the caller checked have().
  size_t be(size_t off, size_t bytes) const {
    size_t v = 0;
    for (size_t i = 0; i < bytes; i++)
      v = (v << 8) | static_cast<unsigned char>(buf_[idx_ + off + i]);
    return v;
  }

  const char* buf_;
  size_t len_;
  int idx_ = 0;
};

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

// Decodes an atom naming one of `modes` into out; otherwise an error naming
// the key and the accepted atoms ("stdin: not pipe or null").
template <typename M>
bool atom_mode(Reader& r, const std::string& key,
               std::initializer_list<std::pair<std::string_view, M>> modes, M& out,
               std::string& error) {
  std::string a;
  if (r.atom(a)) {
    for (const auto& [name, mode] : modes) {
      if (a == name) {
        out = mode;
        return true;
      }
    }
  }
  error = key + ": not ";
  size_t i = 0;
  for (const auto& [name, mode] : modes) {
    error += i == 0 ? "" : i + 1 == modes.size() ? " or " : ", ";
    error += name;
    i++;
  }
  return false;
}

// Decodes a proper list of binaries into out. check returns an error suffix
// for a bad element, or nullptr.
bool binary_list(Reader& r, const char* key, std::vector<std::string>& out, std::string& error,
                 const char* (*check)(const std::string&)) {
  int arity;
  bool nil;
  if (!r.list_header(arity, nil)) {
    error = std::string(key) + ": not a list of binaries";
    return false;
  }
  out.clear();
  for (int i = 0; i < arity; i++) {
    std::string s;
    if (!r.binary(s)) {
      error = std::string(key) + ": element " + std::to_string(i + 1) + " is not a binary";
      return false;
    }
    if (const char* why = check(s)) {
      error = std::string(key) + ": element " + std::to_string(i + 1) + " " + why;
      return false;
    }
    out.push_back(std::move(s));
  }
  if (!nil && !r.list_tail()) {
    error = std::string(key) + ": not a proper list";
    return false;
  }
  return true;
}

const char* check_arg(const std::string& s) { return has_nul(s) ? "contains a NUL byte" : nullptr; }

const char* check_env(const std::string& s) {
  if (has_nul(s)) return "contains a NUL byte";
  size_t eq = s.find('=');
  if (eq == std::string::npos) return "has no '='";
  if (eq == 0) return "has an empty name";
  return nullptr;
}

bool integer_in(Reader& r, const char* key, long lo, long hi, long& v, std::string& error) {
  if (!r.integer(v)) {
    error = std::string(key) + ": not an integer";
    return false;
  }
  if (v < lo || v > hi) {
    error = std::string(key) + ": " + std::to_string(v) + " out of range " + std::to_string(lo) +
            ".." + std::to_string(hi);
    return false;
  }
  return true;
}

// --- identity and limits ---------------------------------------------------

constexpr std::pair<std::string_view, int> kRlimits[] = {
    {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK},
};

// A uid or gid: 0..2^32-2 (-1 means "unchanged" to the kernel), or a name.
bool id_ref(Reader& r, const std::string& what, IdRef& out, std::string& error) {
  long v;
  if (r.peek() == ERL_BINARY_EXT) {
    if (!r.binary(out.name) || out.name.empty() || has_nul(out.name)) {
      error = what + ": empty name, or a NUL byte in it";
      return false;
    }
    return true;
  }
  if (!integer_in(r, what.c_str(), 0, 4294967294L, v, error)) return false;
  out.id = static_cast<uint32_t>(v);
  return true;
}

// A limit: a non-negative integer or `infinity'.
bool limit_value(Reader& r, uint64_t& out) {
  long v;
  if (r.peek() == ERL_SMALL_ATOM_UTF8_EXT || r.peek() == ERL_ATOM_UTF8_EXT ||
      r.peek() == ERL_ATOM_EXT || r.peek() == ERL_SMALL_ATOM_EXT) {
    std::string a;
    if (!r.atom(a) || a != "infinity") return false;
    out = RLIM_INFINITY;
    return true;
  }
  if (!r.integer(v) || v < 0) return false;
  out = static_cast<uint64_t>(v);
  return true;
}

// [{Resource, Soft, Hard}], each resource once, Soft =< Hard.
bool rlimit_list(Reader& r, std::vector<RlimitSpec>& out, std::string& error) {
  int arity;
  bool nil;
  if (!r.list_header(arity, nil)) {
    error = "rlimits: not a list";
    return false;
  }
  unsigned seen = 0;
  for (int i = 0; i < arity; i++) {
    std::string at = "rlimits: element " + std::to_string(i + 1) + " ";
    int n;
    std::string name;
    RlimitSpec l;
    if (!r.tuple_header(n) || n != 3 || !r.atom(name)) {
      error = at + "is not {Resource, Soft, Hard}";
      return false;
    }
    if ((l.resource = rlimit_resource(name)) < 0) {
      error = at + "names no resource";
      return false;
    }
    if (!limit_value(r, l.soft) || !limit_value(r, l.hard)) {
      error = at + "has a limit that is neither a non-negative integer nor infinity";
      return false;
    }
    if (l.soft > l.hard) {
      error = at + "has a soft limit above its hard limit";
      return false;
    }
    if (seen & (1u << l.resource)) {
      error = at + "repeats " + name;
      return false;
    }
    seen |= 1u << l.resource;
    out.push_back(l);
  }
  if (!nil && !r.list_tail()) {
    error = "rlimits: not a proper list";
    return false;
  }
  return true;
}

// Decodes one identity key into spec.identity; false with error set. seen:
// the identity keys met so far, for duplicates.
bool identity_key(Reader& r, const std::string& key, IdentitySpec& id, unsigned& seen,
                  std::string& error) {
  static constexpr std::string_view kKeys[] = {"uid",  "gid",   "groups",      "rlimits",
                                               "nice", "umask", "no_new_privs"};
  unsigned bit = 0;
  while (bit < std::size(kKeys) && kKeys[bit] != key) bit++;
  if (seen & (1u << bit)) {
    error = key + ": duplicate key";
    return false;
  }
  seen |= 1u << bit;
  long v;
  std::string a;
  switch (bit) {
    case 0:
      return id_ref(r, key, id.uid.emplace(), error);
    case 1:
      return id_ref(r, key, id.gid.emplace(), error);
    case 2: {
      int arity;
      bool nil;
      std::string bytes;
      if (r.byte_list(bytes)) {  // [0, 4]: small gids only
        std::vector<IdRef>& gs = id.groups.emplace(bytes.size());
        for (size_t i = 0; i < bytes.size(); i++) gs[i].id = static_cast<unsigned char>(bytes[i]);
        return true;
      }
      if (!r.list_header(arity, nil) || arity > 65536) {
        error = "groups: not a list of at most 65536 groups";
        return false;
      }
      std::vector<IdRef>& gs = id.groups.emplace();
      for (int i = 0; i < arity; i++) {
        if (!id_ref(r, "groups: element " + std::to_string(i + 1), gs.emplace_back(), error))
          return false;
      }
      if (!nil && !r.list_tail()) {
        error = "groups: not a proper list";
        return false;
      }
      return true;
    }
    case 3:
      return rlimit_list(r, id.rlimits, error);
    case 4:
      if (!integer_in(r, "nice", -20, 19, v, error)) return false;
      id.nice = static_cast<int>(v);
      return true;
    case 5:
      if (!integer_in(r, "umask", 0, 0777, v, error)) return false;
      id.umask = static_cast<unsigned>(v);
      return true;
    default:
      if (!r.atom(a) || (a != "true" && a != "false")) {
        error = "no_new_privs: not a boolean";
        return false;
      }
      id.no_new_privs = a == "true";
      return true;
  }
}

bool is_identity_key(const std::string& key) {
  return key == "uid" || key == "gid" || key == "groups" || key == "rlimits" || key == "nice" ||
         key == "umask" || key == "no_new_privs";
}

// cgroup: #{base => Bin, path => Bin, controllers => [Bin], settings =>
// [File, Value, ...]} (every key required; corral_opts builds it). File
// and controller names are checked again: no '/', no "..", not empty.
const char* check_cgroup_name(const std::string& s) {
  if (s.empty()) return "is empty";
  if (has_nul(s) || s.find('/') != std::string::npos || s.find("..") != std::string::npos)
    return "is not a cgroup interface name";
  return nullptr;
}

const char* check_cgroup_value(const std::string& s) {
  return has_nul(s) ? "contains a NUL byte" : nullptr;
}

bool cgroup_map(Reader& r, CgroupSpec& out, std::string& error) {
  int arity;
  if (!r.map_header(arity) || arity != 4) {
    error = "cgroup: not a map of base, path, controllers and settings";
    return false;
  }
  unsigned seen = 0;
  for (int i = 0; i < arity; i++) {
    std::string key;
    if (!r.atom(key)) {
      error = "cgroup: a key is not an atom";
      return false;
    }
    unsigned bit = key == "base" ? 1 : key == "path" ? 2 : key == "controllers" ? 4 : 8;
    if ((bit == 8 && key != "settings") || (seen & bit)) {
      error = "cgroup: unknown or duplicate key " + key;
      return false;
    }
    seen |= bit;
    if (bit <= 2) {
      std::string& dst = bit == 1 ? out.base : out.path;
      if (!r.binary(dst) || has_nul(dst)) {
        error = "cgroup: " + key + " is not a binary without NUL bytes";
        return false;
      }
    } else if (bit == 4) {
      if (!binary_list(r, "cgroup controllers", out.controllers, error, check_cgroup_name))
        return false;
    } else {
      std::vector<std::string> flat;
      if (!binary_list(r, "cgroup settings", flat, error, check_cgroup_value)) return false;
      if (flat.size() % 2 != 0) {
        error = "cgroup settings: odd length";
        return false;
      }
      for (size_t k = 0; k < flat.size(); k += 2) {
        if (const char* why = check_cgroup_name(flat[k])) {
          error = "cgroup settings: file " + flat[k] + " " + why;
          return false;
        }
        out.settings.emplace_back(std::move(flat[k]), std::move(flat[k + 1]));
      }
    }
  }
  return true;
}

// memory_events: `all`, or a non-empty proper list of distinct key atoms
// (frame::kMemoryEventNames).
bool memory_events(Reader& r, MemoryEventsSpec& out, std::string& error) {
  error = "memory_events: not all or a list of memory.events keys";
  if (r.peek() != ERL_LIST_EXT) {
    std::string a;
    if (!r.atom(a) || a != "all") return false;
    out.keys = frame::kMemoryEventAll;
    out.all = true;
    error.clear();
    return true;
  }
  int arity;
  bool nil;
  if (!r.list_header(arity, nil)) return false;
  for (int i = 0; i < arity; i++) {
    std::string a;
    if (!r.atom(a)) return false;
    size_t k = 0;
    while (k < frame::kMemoryEventKeys && a != frame::kMemoryEventNames[k]) k++;
    if (k == frame::kMemoryEventKeys || (out.keys & (1u << k))) return false;
    out.keys |= 1u << k;
  }
  if (out.keys == 0 || !r.list_tail()) return false;
  error.clear();
  return true;
}

}  // namespace

int rlimit_resource(std::string_view name) {
  for (const auto& [n, res] : kRlimits)
    if (n == name) return res;
  return -1;
}

bool decode_spawn_spec(std::string_view buf, SpawnSpec& spec, std::string& error) {
  spec = SpawnSpec{};
  if (buf.size() > INT_MAX) {
    error = "term: too large";
    return false;
  }
  Reader r(buf);
  if (!r.version()) {
    error = "term: bad version byte";
    return false;
  }
  int arity;
  if (!r.map_header(arity)) {
    error = "term: not a map";
    return false;
  }
  enum : unsigned {
    kPath = 1,
    kArgv = 2,
    kEnv = 4,
    kCd = 8,
    kStdin = 16,
    kStdout = 32,
    kStderr = 64,
    kKillTimeout = 128,
    kStopSignal = 256,
    kPipeSize = 512,
    kCgroup = 1024,
    kMemoryEvents = 2048,
    kReportDelay = 4096,
  };
  unsigned seen = 0;
  unsigned identity_seen = 0;
  for (int i = 0; i < arity; i++) {
    std::string key;
    if (!r.atom(key)) {
      error = "term: map key " + std::to_string(i + 1) + " is not an atom";
      return false;
    }
    auto mark = [&](unsigned bit) {
      if (seen & bit) {
        error = key + ": duplicate key";
        return false;
      }
      seen |= bit;
      return true;
    };
    std::string a;
    long v;
    if (key == "path") {
      if (!mark(kPath)) return false;
      if (!r.binary(spec.path)) {
        error = "path: not a binary";
        return false;
      }
      if (has_nul(spec.path)) {
        error = "path: contains a NUL byte";
        return false;
      }
      if (spec.path.empty() || spec.path[0] != '/') {
        error = "path: not absolute";
        return false;
      }
    } else if (key == "argv") {
      if (!mark(kArgv) || !binary_list(r, "argv", spec.argv, error, check_arg)) return false;
      if (spec.argv.empty()) {
        error = "argv: empty";
        return false;
      }
    } else if (key == "env") {
      if (!mark(kEnv) || !binary_list(r, "env", spec.env, error, check_env)) return false;
    } else if (key == "cd") {
      if (!mark(kCd)) return false;
      if (r.peek() == ERL_BINARY_EXT) {
        std::string d;
        if (!r.binary(d)) {
          error = "cd: truncated binary";
          return false;
        }
        if (d.empty() || has_nul(d)) {
          error = "cd: empty or contains a NUL byte";
          return false;
        }
        spec.cd = std::move(d);
      } else if (!r.atom(a) || a != "undefined") {
        error = "cd: neither a binary nor undefined";
        return false;
      }
    } else if (key == "stdin") {
      if (!mark(kStdin) ||
          !atom_mode(r, key, {{"pipe", StdinMode::Pipe}, {"null", StdinMode::Null}}, spec.in,
                     error))
        return false;
    } else if (key == "stdout") {
      if (!mark(kStdout) ||
          !atom_mode(r, key, {{"pipe", StdoutMode::Pipe}, {"null", StdoutMode::Null}}, spec.out,
                     error))
        return false;
    } else if (key == "stderr") {
      if (!mark(kStderr) || !atom_mode(r, key,
                                       {{"pipe", StderrMode::Pipe},
                                        {"stdout", StderrMode::Stdout},
                                        {"null", StderrMode::Null},
                                        {"inherit", StderrMode::Inherit}},
                                       spec.err, error))
        return false;
    } else if (key == "kill_timeout") {
      if (!mark(kKillTimeout) || !integer_in(r, "kill_timeout", 0, LONG_MAX, v, error))
        return false;
      spec.kill_timeout_ms = v;
    } else if (key == "stop_signal") {
      if (!mark(kStopSignal) || !integer_in(r, "stop_signal", 1, 64, v, error)) return false;
      spec.stop_signal = static_cast<int>(v);
    } else if (key == "pipe_size") {
      if (!mark(kPipeSize) || !integer_in(r, "pipe_size", 0, INT_MAX, v, error)) return false;
      spec.pipe_size = static_cast<int>(v);
    } else if (key == "cgroup") {
      if (!mark(kCgroup) || !cgroup_map(r, spec.cgroup, error)) return false;
    } else if (key == "memory_events") {
      if (!mark(kMemoryEvents) || !memory_events(r, spec.memory_events, error)) return false;
    } else if (key == "report_delay") {
      if (!mark(kReportDelay) || !integer_in(r, "report_delay", 1, 1000, v, error)) return false;
      spec.report_delay_ms = static_cast<int>(v);
    } else if (is_identity_key(key)) {
      if (!identity_key(r, key, spec.identity, identity_seen, error)) return false;
    } else {
      error = key + ": unknown key";
      return false;
    }
  }
  if (!r.at_end()) {
    error = "term: trailing bytes after the map";
    return false;
  }
  for (auto [bit, name] : {std::pair{kPath, "path"}, {kArgv, "argv"}, {kEnv, "env"}}) {
    if (!(seen & bit)) {
      error = std::string(name) + ": missing";
      return false;
    }
  }
  return true;
}

void resolve_cd(SpawnSpec& spec, std::string_view cwd) {
  if (cwd.empty()) return;
  if (!spec.cd) {
    spec.cd = std::string(cwd);
  } else if (spec.cd->front() != '/') {
    std::string abs(cwd);
    if (abs.back() != '/') abs += '/';
    spec.cd = abs + *spec.cd;
  }
}

}  // namespace corral::spawner
