// Decodes a spawn request (term_to_binary of an option map) into a SpawnSpec.
//
// ei's decoders trust the buffer, so every read is preceded by a bounds check
// that computes the encoded size of the term from its tag and length fields.
#include "options.h"

#include <ei.h>

#include <climits>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

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

}  // namespace

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
  };
  unsigned seen = 0;
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
