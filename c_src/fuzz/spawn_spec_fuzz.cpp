// libFuzzer target: the spawner's decoding of a Spawn request's term
// (decode_spawn_spec, spawner/options.h) fed arbitrary bytes.
//
// Beyond "no crash, no leak, no read outside the input", each result is
// checked: a rejection carries a message, and an accepted spec holds what
// the spawner relies on before it clones (an absolute path without NUL,
// a non-empty argv, KEY=VALUE environment entries, ranges of the numbers),
// and encodes back to a term that decodes to the same spec.
#include <climits>
#include <string>

#include "guarded.h"
#include "options.h"
#include "request_terms.h"

using corral::spawner::SpawnSpec;

namespace {

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

void check_spec(const SpawnSpec& s) {
  FUZZ_CHECK(!s.path.empty() && s.path[0] == '/' && !has_nul(s.path), "path '%s'", s.path.c_str());
  FUZZ_CHECK(!s.argv.empty(), "empty argv");
  for (const auto& a : s.argv) FUZZ_CHECK(!has_nul(a), "argv entry with NUL");
  for (const auto& e : s.env) {
    size_t eq = e.find('=');
    FUZZ_CHECK(!has_nul(e) && eq != std::string::npos && eq > 0, "env entry '%s'", e.c_str());
  }
  if (s.cd) FUZZ_CHECK(!s.cd->empty() && !has_nul(*s.cd), "cd");
  FUZZ_CHECK(s.kill_timeout_ms >= 0, "kill_timeout %lld",
             static_cast<long long>(s.kill_timeout_ms));
  FUZZ_CHECK(s.stop_signal >= 1 && s.stop_signal <= 64, "stop_signal %d", s.stop_signal);
  FUZZ_CHECK(s.pipe_size >= 0, "pipe_size %d", s.pipe_size);
}

// The spec as the Erlang side would send it (every key present), by the
// tests' encoder (c_src/test/request_terms.h).
std::string encode(const SpawnSpec& s) {
  using corral::spawner::StderrMode;
  using corral::spawner::StdinMode;
  using corral::spawner::StdoutMode;
  using namespace corral::spawner::terms;
  return map_term({
      {"path", bin(s.path)},
      {"argv", bins(s.argv)},
      {"env", bins(s.env)},
      {"cd", s.cd ? bin(*s.cd) : atom("undefined")},
      {"stdin", atom(s.in == StdinMode::Pipe ? "pipe" : "null")},
      {"stdout", atom(s.out == StdoutMode::Pipe ? "pipe" : "null")},
      {"stderr", atom(s.err == StderrMode::Pipe     ? "pipe"
                      : s.err == StderrMode::Stdout ? "stdout"
                      : s.err == StderrMode::Null   ? "null"
                                                    : "inherit")},
      {"kill_timeout", lng(s.kill_timeout_ms)},
      {"stop_signal", lng(s.stop_signal)},
      {"pipe_size", lng(s.pipe_size)},
  });
}

bool same(const SpawnSpec& a, const SpawnSpec& b) {
  return a.path == b.path && a.argv == b.argv && a.env == b.env && a.cd == b.cd && a.in == b.in &&
         a.out == b.out && a.err == b.err && a.kill_timeout_ms == b.kill_timeout_ms &&
         a.stop_signal == b.stop_signal && a.pipe_size == b.pipe_size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static corral::fuzz::Guarded guarded;
  std::string_view buf = guarded.place(data, size);
  SpawnSpec spec;
  std::string error;
  if (!corral::spawner::decode_spawn_spec(buf, spec, error)) {
    FUZZ_CHECK(!error.empty(), "rejected without a message");
    return 0;
  }
  check_spec(spec);

  SpawnSpec again;
  std::string error2;
  std::string term = encode(spec);
  FUZZ_CHECK(corral::spawner::decode_spawn_spec(term, again, error2),
             "re-encoded spec rejected: %s", error2.c_str());
  FUZZ_CHECK(same(spec, again), "re-encoded spec decodes differently");

  corral::spawner::resolve_cd(spec, "/vm/cwd");
  FUZZ_CHECK(spec.cd && !spec.cd->empty() && spec.cd->front() == '/',
             "cd not absolute after resolve_cd");
  return 0;
}
