// Owning file descriptor: every fd the addon opens lives in one of these, so an early
// return or a thrown Napi::Error can never leak it.
#ifndef VH_NATIVE_UNIQUE_FD_H_
#define VH_NATIVE_UNIQUE_FD_H_

#include <unistd.h>

namespace vh {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { Reset(); }

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }

  int Get() const noexcept { return fd_; }
  bool Valid() const noexcept { return fd_ >= 0; }

  // Hands ownership to the caller (e.g. a child object that will close it).
  int Release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // close() is not retried on EINTR: on Linux the fd is gone either way and a retry could
  // close an fd another thread just received.
  void Reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace vh

#endif  // VH_NATIVE_UNIQUE_FD_H_
