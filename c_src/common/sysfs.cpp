#include "sysfs.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace corral {

int read_file(const std::string& path, std::string& ret, int at) {
  int fd = openat(at, path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ret.clear();
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return -err;
    }
    if (n == 0) break;
    ret.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return 0;
}

int subdirs(const std::string& dir, std::vector<std::string>& ret) {
  DIR* d = opendir(dir.c_str());
  if (!d) return -errno;
  ret.clear();
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (is_dir) ret.emplace_back(e->d_name);
  }
  closedir(d);
  return 0;
}

}  // namespace corral
