// libFuzzer target: the spawner's decoding of a Spawn request's term
// (decode_spawn_spec, spawner/options.h) fed arbitrary bytes.
//
// Beyond "no crash, no leak, no read outside the input", each result is
// checked: a rejection carries a message, and an accepted spec holds what
// the spawner relies on before it clones (an absolute path without NUL,
// a non-empty argv, KEY=VALUE environment entries, ranges of the numbers),
// and encodes back to a term that decodes to the same spec.
#include <ei.h>

#include <climits>
#include <string>

#include "guarded.h"
#include "options.h"

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

void encode_list(ei_x_buff& x, const char* key, const std::vector<std::string>& v) {
  ei_x_encode_atom(&x, key);
  if (!v.empty()) ei_x_encode_list_header(&x, static_cast<long>(v.size()));
  for (const auto& s : v) ei_x_encode_binary(&x, s.data(), static_cast<int>(s.size()));
  ei_x_encode_empty_list(&x);
}

// The spec as the Erlang side would send it (every key present).
std::string encode(const SpawnSpec& s) {
  using corral::spawner::StderrMode;
  using corral::spawner::StdinMode;
  using corral::spawner::StdoutMode;
  ei_x_buff x;
  ei_x_new_with_version(&x);
  ei_x_encode_map_header(&x, 10);
  ei_x_encode_atom(&x, "path");
  ei_x_encode_binary(&x, s.path.data(), static_cast<int>(s.path.size()));
  encode_list(x, "argv", s.argv);
  encode_list(x, "env", s.env);
  ei_x_encode_atom(&x, "cd");
  if (s.cd) {
    ei_x_encode_binary(&x, s.cd->data(), static_cast<int>(s.cd->size()));
  } else {
    ei_x_encode_atom(&x, "undefined");
  }
  ei_x_encode_atom(&x, "stdin");
  ei_x_encode_atom(&x, s.in == StdinMode::Pipe ? "pipe" : "null");
  ei_x_encode_atom(&x, "stdout");
  ei_x_encode_atom(&x, s.out == StdoutMode::Pipe ? "pipe" : "null");
  ei_x_encode_atom(&x, "stderr");
  ei_x_encode_atom(&x, s.err == StderrMode::Pipe     ? "pipe"
                       : s.err == StderrMode::Stdout ? "stdout"
                       : s.err == StderrMode::Null   ? "null"
                                                     : "inherit");
  ei_x_encode_atom(&x, "kill_timeout");
  ei_x_encode_longlong(&x, s.kill_timeout_ms);
  ei_x_encode_atom(&x, "stop_signal");
  ei_x_encode_long(&x, s.stop_signal);
  ei_x_encode_atom(&x, "pipe_size");
  ei_x_encode_long(&x, s.pipe_size);
  std::string out(x.buff, static_cast<size_t>(x.index));
  ei_x_free(&x);
  return out;
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
