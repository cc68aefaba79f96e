#include "anydefer/net/tcp.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "anydefer/detail/assert.hpp"
#include "anydefer/executors/detail/io_operation.hpp"

namespace anydefer::net {

// --- endpoint ----------------------------------------------------------------------------------------------------

namespace {

endpoint make_v4(std::uint32_t host_order_address, std::uint16_t port) noexcept {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(host_order_address);
  return endpoint::from(reinterpret_cast<const sockaddr*>(&a), sizeof a);  // NOLINT: the sockets API
}

endpoint make_v6(const in6_addr& address, std::uint16_t port) noexcept {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  a.sin6_addr = address;
  return endpoint::from(reinterpret_cast<const sockaddr*>(&a), sizeof a);  // NOLINT: the sockets API
}

[[noreturn]] void bad_endpoint(std::string_view text, const char* why) {
  throw std::invalid_argument("anydefer::net::endpoint: \"" + std::string(text) + "\" " + why);
}

std::system_error errno_error(int code, const std::string& what) {
  return {code, std::generic_category(), "anydefer::net: " + what};
}

std::exception_ptr errno_failure(int code, const std::string& what) noexcept {
  try {
    return std::make_exception_ptr(errno_error(code, what));
  } catch (...) {
    return std::current_exception();
  }
}

void set_nodelay(int fd) noexcept {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // not TCP (a socketpair in a test): no matter
}

}  // namespace

endpoint::endpoint() noexcept : size_(sizeof(sockaddr_in)) {
  storage_.ss_family = AF_INET;  // the rest zero: 0.0.0.0, port 0
}

endpoint endpoint::from(const sockaddr* address, socklen_t size) {
  endpoint e;
  if (address->sa_family == AF_INET && size >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    e.size_ = sizeof(sockaddr_in);
  } else if (address->sa_family == AF_INET6 && size >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    e.size_ = sizeof(sockaddr_in6);
  } else {
    throw std::invalid_argument("anydefer::net::endpoint: not an IPv4 or IPv6 socket address");
  }
  std::memcpy(&e.storage_, address, e.size_);
  return e;
}

endpoint endpoint::parse(std::string_view text) {
  std::string_view host;
  std::string_view port_text;
  const bool v6 = !text.empty() && text.front() == '[';
  if (v6) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      bad_endpoint(text, "is not [address]:port");
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) bad_endpoint(text, "has no :port");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port_text.empty() || port > 65535) {
    bad_endpoint(text, "has no valid port (0 to 65535)");
  }
  const std::string host_copy(host);
  if (v6) {
    in6_addr a{};
    if (::inet_pton(AF_INET6, host_copy.c_str(), &a) != 1) bad_endpoint(text, "has no valid IPv6 address");
    return make_v6(a, static_cast<std::uint16_t>(port));
  }
  in_addr a{};
  if (::inet_pton(AF_INET, host_copy.c_str(), &a) != 1) bad_endpoint(text, "has no valid IPv4 address");
  return make_v4(ntohl(a.s_addr), static_cast<std::uint16_t>(port));
}

endpoint endpoint::loopback_v4(std::uint16_t port) noexcept { return make_v4(INADDR_LOOPBACK, port); }
endpoint endpoint::loopback_v6(std::uint16_t port) noexcept { return make_v6(in6addr_loopback, port); }
endpoint endpoint::any_v4(std::uint16_t port) noexcept { return make_v4(INADDR_ANY, port); }
endpoint endpoint::any_v6(std::uint16_t port) noexcept { return make_v6(in6addr_any, port); }

int endpoint::family() const noexcept { return storage_.ss_family; }
bool endpoint::is_v6() const noexcept { return storage_.ss_family == AF_INET6; }

std::uint16_t endpoint::port() const noexcept {
  if (is_v6()) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);  // NOLINT
  return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);                 // NOLINT
}

std::string endpoint::to_string() const {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (is_v6()) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text.data(),  // NOLINT
                static_cast<socklen_t>(text.size()));
  } else {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text.data(),  // NOLINT
                static_cast<socklen_t>(text.size()));
  }
  // Appended piece by piece: GCC 12's -Wrestrict misreads a chain of std::string operator+ (its bug 105651).
  std::string out;
  if (is_v6()) out.push_back('[');
  out.append(text.data());
  if (is_v6()) out.push_back(']');
  out.push_back(':');
  out.append(std::to_string(port()));
  return out;
}

bool operator==(const endpoint& a, const endpoint& b) noexcept {
  return a.size_ == b.size_ && std::memcmp(&a.storage_, &b.storage_, a.size_) == 0;
}

// --- the cores ---------------------------------------------------------------------------------------------------

namespace detail {

// What a stream or listener handle owns, and what its pending operations keep alive. The count is atomic since the
// last reference may go on any thread (a handle destroyed off the loop, an operation freed where its deferred
// was dropped); everything else is used on the loop thread only.
class core_base {
 public:
  explicit core_base(reactor& loop, int fd) noexcept : loop_(loop), fd_(fd), closer_(&closer_operations, *this) {}
  core_base(const core_base&) = delete;
  core_base& operator=(const core_base&) = delete;

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // acq_rel: the last release sees every other holder's writes before it deletes.
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Virtual: the last release() deletes through this base.
  virtual ~core_base() {
    if (fd_ >= 0) ::close(fd_);
  }

  reactor& loop() const noexcept { return loop_; }
  int fd() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }

  // The handle goes: close on the loop thread (forwarded there from elsewhere), then drop the handle's reference.
  void close_and_release() noexcept {
    if (loop_.running_in_this_thread()) {
      close_here();
      release();
    } else {
      loop_.execute(closer_);
    }
  }

  void require_loop_thread(const char* operation) const {
    if (!loop_.running_in_this_thread()) {
      throw std::logic_error(std::string("anydefer::net: ") + operation +
                             " is called on the loop thread of the reactor that owns the socket");
    }
  }

  // Loop thread: fails pending operations with ECANCELED, forgets and closes the descriptor.
  void close_here() noexcept {
    if (fd_ < 0) return;
    const int fd = std::exchange(fd_, -1);
    abort_pending(errno_failure(ECANCELED, "the socket was closed while an operation was pending"));
    loop_.forget_fd(fd);  // no waiter is left: this only takes it out of the epoll set
    ::close(fd);
  }

 protected:
  virtual void abort_pending(const std::exception_ptr& why) noexcept = 0;
  // After the reactor stopped (a forwarded close rejected): nothing runs on the loop any more.
  virtual void close_without_loop() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  class closer_task final : public task {
   public:
    closer_task(const operations* ops, core_base& owner) noexcept : task(ops), owner_(owner) {}
    core_base& owner() const noexcept { return owner_; }

   private:
    core_base& owner_;
  };
  static void run_close(task& t) noexcept {
    core_base& self = static_cast<closer_task&>(t).owner();
    self.close_here();
    self.release();
  }
  static void reject_close(task& t, std::exception_ptr /*why*/) noexcept {
    core_base& self = static_cast<closer_task&>(t).owner();
    self.close_without_loop();
    self.release();
  }
  static constexpr task::operations closer_operations{&run_close, &reject_close};

  std::atomic<int> refs_{1};
  reactor& loop_;
  int fd_;
  closer_task closer_;
};

class stream_core final : public core_base {
 public:
  using core_base::core_base;

  static tcp_stream make(reactor& loop, int fd) { return tcp_stream(new stream_core(loop, fd)); }

  deferred<std::size_t> read_some(std::span<std::byte> into, std::source_location loc);
  deferred<void> write_all(std::span<const std::byte> from, std::source_location loc);

  anydefer::detail::io_operation<std::size_t>* reader = nullptr;  // the pending read_some, if any
  anydefer::detail::io_operation<void>* writer = nullptr;         // the pending write_all, if any
  bool output_broken = false;  // a write_all was cancelled after writing part of its buffer
  // The last read got less than it asked for: the socket is most likely drained, so the next read_some waits for
  // a report before trying (in a request/reply loop that saves the recv that would fail with EAGAIN).
  bool probably_drained = false;

 private:
  void abort_pending(const std::exception_ptr& why) noexcept override {
    if (reader != nullptr) reader->abort(why);
    if (writer != nullptr) writer->abort(why);
  }
};

class listener_core final : public core_base {
 public:
  using core_base::core_base;

  deferred<tcp_stream> accept(std::source_location loc);

  // Accepts one connection without waiting: a stream, or -1 with errno (EAGAIN: none is waiting).
  int accept_one() const noexcept {
    for (;;) {
      const int fd = ::accept4(this->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        set_nodelay(fd);
        return fd;
      }
      // Aborted by the peer before we took it, or interrupted: try the next one.
      if (errno == ECONNABORTED || errno == EPROTO || errno == EINTR || errno == EPERM) continue;
      return -1;
    }
  }

  anydefer::detail::io_operation<tcp_stream>* acceptor = nullptr;  // the pending accept, if any
  std::deque<tcp_stream> kept;  // connections accepted just as another thread's cancel won: the next accept's

 private:
  void abort_pending(const std::exception_ptr& why) noexcept override {
    if (acceptor != nullptr) acceptor->abort(why);
  }
};

// The close() of a stream or listener handle: on the loop thread the socket closes now and the handle stays (not
// open); elsewhere the close is forwarded to the loop and the handle lets go of its core.
template <class Core>
void close_handle(Core*& core) noexcept {
  if (core == nullptr) return;
  if (core->loop().running_in_this_thread()) {
    // Held across the close: failing the pending operations runs their continuations here, and one of them may
    // destroy this very handle (a connection freed by its read's errback) while close_here() still runs.
    Core* const held = core;
    held->retain();
    held->close_here();
    held->release();
  } else {
    std::exchange(core, nullptr)->close_and_release();
  }
}

// --- operations --------------------------------------------------------------------------------------------------

namespace {

using anydefer::detail::io_operation;
using direction = anydefer::detail::io_waiter::direction;

class read_operation final : public io_operation<std::size_t> {
 public:
  read_operation(stream_core& core, std::span<std::byte> into, std::source_location loc) noexcept
      : io_operation(core.loop(), core.fd(), direction::read, loc, settles::on_loop), core_(core), into_(into) {
    core_.retain();
  }
  ~read_operation() override { core_.release(); }

 private:
  void on_ready() noexcept override {
    const ssize_t n = ::recv(fd(), into_.data(), into_.size(), 0);
    if (n >= 0) {
      const auto got = static_cast<std::size_t>(n);
      core_.probably_drained = got < into_.size();
      // Never lost: only this thread fires a read (settles::on_loop), so nothing claimed it meanwhile.
      [[maybe_unused]] const bool settled = settle_value(got);
      ANYDEFER_ASSERT(settled && "a read is fired on its loop thread alone");
      finished();
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      wait_again();
    } else {
      settle_failure(errno_failure(errno, "recv"));
    }
  }
  void on_ended(end_reason /*why*/) noexcept override {
    if (core_.reader == this) core_.reader = nullptr;
  }

  stream_core& core_;
  std::span<std::byte> into_;
};

// Sends as much of `rest` as the socket takes; returns 0 when all went, EAGAIN when it took no more, or the errno.
int send_some(int fd, std::span<const std::byte>& rest, std::size_t& sent) noexcept {
  while (!rest.empty()) {
    const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EWOULDBLOCK ? EAGAIN : errno;
    }
    rest = rest.subspan(static_cast<std::size_t>(n));
    sent += static_cast<std::size_t>(n);
  }
  return 0;
}

class write_operation final : public io_operation<void> {
 public:
  write_operation(stream_core& core, std::span<const std::byte> rest, std::size_t sent,
                  std::source_location loc) noexcept
      : io_operation(core.loop(), core.fd(), direction::write, loc, settles::on_loop),
        core_(core),
        rest_(rest),
        sent_(sent) {
    core_.retain();
  }
  ~write_operation() override { core_.release(); }

 private:
  void on_ready() noexcept override {
    const int error = send_some(fd(), rest_, sent_);
    if (error == EAGAIN) {
      wait_again();
    } else if (error == 0) {
      settle_value();  // a cancel that won now came after every byte went: the stream stays framed
      finished();
    } else {
      settle_failure(errno_failure(error, "send"));
    }
  }
  void on_ended(end_reason why) noexcept override {
    if (core_.writer == this) core_.writer = nullptr;
    // Cancelled (or cut off by a close) part-way: the peer got part of the buffer.
    if (why != end_reason::settled && sent_ > 0 && !rest_.empty()) core_.output_broken = true;
  }

  stream_core& core_;
  std::span<const std::byte> rest_;
  std::size_t sent_;
};

class accept_operation final : public io_operation<tcp_stream> {
 public:
  accept_operation(listener_core& core, std::source_location loc) noexcept
      : io_operation(core.loop(), core.fd(), direction::read, loc), core_(core) {
    core_.retain();
  }
  ~accept_operation() override { core_.release(); }

 private:
  void on_ready() noexcept override {
    const int fd = core_.accept_one();
    if (fd >= 0) {
      tcp_stream stream;
      try {
        stream = stream_core::make(loop(), fd);
      } catch (...) {  // the stream's core could not be allocated
        ::close(fd);
        settle_failure(std::current_exception());
        return;
      }
      // A cancel from another thread won just now: the connection waits for the next accept().
      // NOLINTNEXTLINE(bugprone-use-after-move): a settle that lost its claim leaves its argument untouched
      if (!settle_value(std::move(stream))) core_.kept.push_back(std::move(stream));
      finished();
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_again();
    } else {
      settle_failure(errno_failure(errno, "accept"));
    }
  }
  void on_ended(end_reason /*why*/) noexcept override {
    if (core_.acceptor == this) core_.acceptor = nullptr;
  }

  listener_core& core_;
};

class connect_operation final : public io_operation<tcp_stream> {
 public:
  connect_operation(reactor& loop, int fd, const endpoint& to, std::source_location loc) noexcept
      : io_operation(loop, fd, direction::write, loc), fd_(fd), to_(to) {}

  ~connect_operation() override {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  void on_ready() noexcept override {
    int error = 0;
    socklen_t size = sizeof error;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
    // SO_ERROR is 0 while the handshake is still under way too, and a report can arrive that is not about this
    // socket (one for a descriptor closed earlier in the same batch, whose number this socket reuses): only a
    // peer address says it is connected (ENOTCONN: still in progress).
    sockaddr_storage peer{};
    socklen_t peer_size = sizeof peer;
    if (error == 0 && ::getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &peer_size) != 0) {  // NOLINT: sockets
      error = errno == ENOTCONN ? EINPROGRESS : errno;
    }
    if (error == EINPROGRESS || error == EALREADY) {
      wait_again();
      return;
    }
    if (error != 0) {
      settle_failure(errno_failure(error, "connect to " + to_.to_string()));
      return;
    }
    try {
      // The stream forgets the descriptor from here on; a stream made for a cancelled connect closes at once.
      settle_value(stream_core::make(loop(), std::exchange(fd_, -1)));
    } catch (...) {
      settle_failure(std::current_exception());
      return;
    }
    finished();
  }
  void on_ended(end_reason /*why*/) noexcept override {
    if (fd_ < 0) return;
    if (loop().running_in_this_thread()) loop().forget_fd(fd_);
    ::close(std::exchange(fd_, -1));
  }

  int fd_;
  endpoint to_;
};

}  // namespace

deferred<std::size_t> stream_core::read_some(std::span<std::byte> into, std::source_location loc) {
  require_loop_thread("tcp_stream::read_some");
  if (!is_open()) throw std::logic_error("anydefer::net: tcp_stream::read_some on a closed stream");
  if (reader != nullptr && !reader->end_if_cancelled()) {
    throw std::logic_error("anydefer::net: tcp_stream::read_some while another read_some is pending");
  }
  if (into.empty()) return succeed(std::size_t{0}, loc);
  // Level-triggered waits make skipping the attempt safe: data that is already there is reported at once.
  for (bool try_now = !std::exchange(probably_drained, false); try_now;) {
    const ssize_t n = ::recv(fd(), into.data(), into.size(), 0);
    if (n >= 0) {
      probably_drained = static_cast<std::size_t>(n) < into.size();
      return succeed(static_cast<std::size_t>(n), loc);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return fail<std::size_t>(errno_error(errno, "recv"), loc);
    try_now = false;
  }
  auto* op = new read_operation(*this, into, loc);
  deferred<std::size_t> out = anydefer::detail::access::adopt<std::size_t>(op);
  reader = op;
  op->start();
  return out;
}

deferred<void> stream_core::write_all(std::span<const std::byte> from, std::source_location loc) {
  require_loop_thread("tcp_stream::write_all");
  if (!is_open()) throw std::logic_error("anydefer::net: tcp_stream::write_all on a closed stream");
  if (writer != nullptr && !writer->end_if_cancelled()) {
    throw std::logic_error("anydefer::net: tcp_stream::write_all while another write_all is pending");
  }
  if (output_broken) {
    throw std::logic_error(
        "anydefer::net: tcp_stream::write_all after a write_all was cancelled part-way: the peer got part of a "
        "message, so the stream's output is no longer framed");
  }
  std::size_t sent = 0;
  const int error = send_some(fd(), from, sent);
  if (error == 0) return succeed(loc);
  if (error != EAGAIN) return fail<void>(errno_error(error, "send"), loc);
  auto* op = new write_operation(*this, from, sent, loc);
  deferred<void> out = anydefer::detail::access::adopt<void>(op);
  writer = op;
  op->start();
  return out;
}

deferred<tcp_stream> listener_core::accept(std::source_location loc) {
  require_loop_thread("tcp_listener::accept");
  if (!is_open()) throw std::logic_error("anydefer::net: tcp_listener::accept on a closed listener");
  if (acceptor != nullptr && !acceptor->end_if_cancelled()) {
    throw std::logic_error("anydefer::net: tcp_listener::accept while another accept is pending");
  }
  if (!kept.empty()) {
    tcp_stream first = std::move(kept.front());
    kept.pop_front();
    return succeed(std::move(first), loc);
  }
  const int fd = accept_one();
  if (fd >= 0) return succeed(stream_core::make(loop(), fd), loc);
  if (errno != EAGAIN && errno != EWOULDBLOCK) return fail<tcp_stream>(errno_error(errno, "accept"), loc);
  auto* op = new accept_operation(*this, loc);
  deferred<tcp_stream> out = anydefer::detail::access::adopt<tcp_stream>(op);
  acceptor = op;
  op->start();
  return out;
}

}  // namespace detail

// --- tcp_stream --------------------------------------------------------------------------------------------------

namespace {

int open_socket(int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errno_error(errno, "socket");
  return fd;
}

}  // namespace

deferred<tcp_stream> tcp_stream::connect(reactor& loop, const endpoint& to, std::source_location loc) {
  int fd = -1;
  try {
    fd = open_socket(to.family());
  } catch (const std::system_error& e) {
    return fail<tcp_stream>(e, loc);
  }
  set_nodelay(fd);
  if (::connect(fd, to.data(), to.size()) != 0 && errno != EINPROGRESS && errno != EINTR) {
    const int error = errno;
    ::close(fd);
    return fail<tcp_stream>(errno_error(error, "connect to " + to.to_string()), loc);
  }
  // Connected or in progress: writable once the outcome is known (SO_ERROR says which).
  auto* op = new detail::connect_operation(loop, fd, to, loc);
  deferred<tcp_stream> out = anydefer::detail::access::adopt<tcp_stream>(op);
  op->start();
  return out;
}

tcp_stream tcp_stream::adopt(reactor& loop, int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw errno_error(errno, "fcntl(O_NONBLOCK)");
  set_nodelay(fd);
  return detail::stream_core::make(loop, fd);
}

tcp_stream::tcp_stream() noexcept = default;
tcp_stream::tcp_stream(tcp_stream&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
tcp_stream& tcp_stream::operator=(tcp_stream&& other) noexcept {
  if (this != &other) {
    if (core_ != nullptr) core_->close_and_release();
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}
tcp_stream::~tcp_stream() {
  // NOLINTNEXTLINE(clang-analyzer-cplusplus.NewDelete): counted; the analyzer cannot follow the reference count
  if (core_ != nullptr) core_->close_and_release();
}

deferred<std::size_t> tcp_stream::read_some(std::span<std::byte> into, std::source_location loc) {
  if (core_ == nullptr) throw std::logic_error("anydefer::net: tcp_stream::read_some on an empty tcp_stream");
  return core_->read_some(into, loc);
}

deferred<void> tcp_stream::write_all(std::span<const std::byte> from, std::source_location loc) {
  if (core_ == nullptr) throw std::logic_error("anydefer::net: tcp_stream::write_all on an empty tcp_stream");
  return core_->write_all(from, loc);
}

deferred<void> tcp_stream::write_all(std::string_view from, std::source_location loc) {
  return write_all(std::as_bytes(std::span(from.data(), from.size())), loc);
}

void tcp_stream::shutdown_write() {
  if (core_ == nullptr || !core_->is_open()) {
    throw std::logic_error("anydefer::net: tcp_stream::shutdown_write on a closed stream");
  }
  if (::shutdown(core_->fd(), SHUT_WR) != 0) throw errno_error(errno, "shutdown");
}

void tcp_stream::close() noexcept { detail::close_handle(core_); }

bool tcp_stream::is_open() const noexcept { return core_ != nullptr && core_->is_open(); }
int tcp_stream::native_handle() const noexcept { return core_ != nullptr ? core_->fd() : -1; }

namespace {

template <class Get>
endpoint socket_name(int fd, Get get, const char* what) {
  sockaddr_storage a{};
  socklen_t size = sizeof a;
  if (fd < 0) throw errno_error(EBADF, what);
  if (get(fd, reinterpret_cast<sockaddr*>(&a), &size) != 0) throw errno_error(errno, what);  // NOLINT
  return endpoint::from(reinterpret_cast<const sockaddr*>(&a), size);                        // NOLINT
}

}  // namespace

endpoint tcp_stream::local_endpoint() const { return socket_name(native_handle(), ::getsockname, "getsockname"); }
endpoint tcp_stream::remote_endpoint() const { return socket_name(native_handle(), ::getpeername, "getpeername"); }

reactor& tcp_stream::owner() const {
  if (core_ == nullptr) throw std::logic_error("anydefer::net: tcp_stream::owner of an empty tcp_stream");
  return core_->loop();
}

// --- tcp_listener ------------------------------------------------------------------------------------------------

tcp_listener tcp_listener::bind(reactor& loop, const endpoint& at, listen_options options) {
  const int fd = open_socket(at.family());
  const auto fail_with = [&](const char* what) {
    const int error = errno;
    ::close(fd);
    throw errno_error(error, std::string(what) + " " + at.to_string());
  };
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) fail_with("SO_REUSEADDR on");
  if (options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    fail_with("SO_REUSEPORT on");
  }
  if (::bind(fd, at.data(), at.size()) != 0) fail_with("bind");
  if (::listen(fd, options.backlog) != 0) fail_with("listen on");
  tcp_listener l;
  try {
    l.core_ = new detail::listener_core(loop, fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return l;
}

tcp_listener::tcp_listener() noexcept = default;
tcp_listener::tcp_listener(tcp_listener&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
tcp_listener& tcp_listener::operator=(tcp_listener&& other) noexcept {
  if (this != &other) {
    if (core_ != nullptr) core_->close_and_release();
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}
tcp_listener::~tcp_listener() {
  if (core_ != nullptr) core_->close_and_release();
}

deferred<tcp_stream> tcp_listener::accept(std::source_location loc) {
  if (core_ == nullptr) throw std::logic_error("anydefer::net: tcp_listener::accept on an empty tcp_listener");
  return core_->accept(loc);
}

void tcp_listener::close() noexcept { detail::close_handle(core_); }

bool tcp_listener::is_open() const noexcept { return core_ != nullptr && core_->is_open(); }
int tcp_listener::native_handle() const noexcept { return core_ != nullptr ? core_->fd() : -1; }
endpoint tcp_listener::local_endpoint() const { return socket_name(native_handle(), ::getsockname, "getsockname"); }

}  // namespace anydefer::net
