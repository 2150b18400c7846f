// Test support for the fuzz targets: input placed flush against an
// unmapped page, and a check that aborts (libFuzzer reports an abort as a
// crash, with the input that caused it).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace corral::fuzz {

#define FUZZ_CHECK(cond, ...)                                                       \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                            \
      std::fputc('\n', stderr);                                                     \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

// libei.a is not built with AddressSanitizer, so an over-read inside ei's
// decoders would go unseen in a heap buffer. Copied here, the input's last
// byte is the last byte before a PROT_NONE page: reading one byte past the
// end faults, instrumented or not.
class Guarded {
 public:
  static constexpr size_t kCapacity = 1 << 20;

  Guarded() : page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
    void* p = mmap(nullptr, kCapacity + page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) std::abort();
    base_ = static_cast<char*>(p);
    if (mprotect(base_ + kCapacity, page_, PROT_NONE) != 0) std::abort();
  }

  // The input, copied to end at the guard page (inputs larger than the
  // region are used where they are).
  std::string_view place(const uint8_t* data, size_t size) {
    if (size > kCapacity) return {reinterpret_cast<const char*>(data), size};
    char* at = base_ + kCapacity - size;
    if (size > 0) std::memcpy(at, data, size);
    return {at, size};
  }

 private:
  char* base_ = nullptr;
  size_t page_ = 0;
};

}  // namespace corral::fuzz
