// anydefer/executors/detail/io_waiter.hpp: one wait for a file descriptor to become readable or writable, queued on
// a reactor's loop thread (reactor::watch). The net layer's operations and reactor::wait_readable()/wait_writable()
// are io_waiters; a user of the public API never sees one.
//
// An io_waiter is intrusive: the reactor stores a pointer to it in its table of descriptors, and calls exactly one
// of its two operations, once, on the loop thread, unless reactor::unwatch() took it back first:
//   - ready(): the descriptor reported readiness in the waited direction, or an error or hang-up (the operation
//     finds out which by trying its system call). Readiness is level-triggered and may be spurious: an operation
//     that then gets EAGAIN waits again.
//   - abandoned(why): the wait ends without readiness: the reactor stops (executor_stopped_error), or
//     reactor::forget_fd() was called for the descriptor.
// The waiter is no longer in the table when either is called, so either may watch again, or free the waiter.
// A third operation, cancelled(), may be asked at any time on the loop thread: true means the wait no longer
// matters (its deferred was cancelled from another thread, and the take-back is on its way), so a new waiter on
// the same descriptor and direction replaces it; the reactor then calls its ready(), which lets it go.
#pragma once

#include <cstdint>
#include <exception>

namespace anydefer {
class reactor;  // NOLINT(cppcoreguidelines-virtual-class-destructor): final, never owned as a timer_service
}

namespace anydefer::detail {

class io_waiter {
 public:
  enum class direction : std::uint8_t { read, write };

  struct operations {
    void (*ready)(io_waiter&) noexcept;
    void (*abandoned)(io_waiter&, std::exception_ptr why) noexcept;
    bool (*cancelled)(const io_waiter&) noexcept;
  };

  constexpr io_waiter(const operations* ops, int fd, direction d) noexcept : ops_(ops), fd_(fd), direction_(d) {}
  io_waiter(const io_waiter&) = delete;
  io_waiter& operator=(const io_waiter&) = delete;

  int fd() const noexcept { return fd_; }
  direction waits_for() const noexcept { return direction_; }

  // Re-targets an idle waiter (one not being watched) at another descriptor or direction.
  void retarget(int fd, direction d) noexcept {
    fd_ = fd;
    direction_ = d;
  }

 protected:
  ~io_waiter() = default;  // owned by what derives from it

 private:
  friend class anydefer::reactor;
  void ready() noexcept { ops_->ready(*this); }
  void abandoned(std::exception_ptr why) noexcept { ops_->abandoned(*this, std::move(why)); }
  bool cancelled() const noexcept { return ops_->cancelled(*this); }

  const operations* ops_;
  int fd_;
  direction direction_;
};

}  // namespace anydefer::detail
