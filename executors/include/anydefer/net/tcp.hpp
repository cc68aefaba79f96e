// anydefer/net/tcp.hpp: TCP streams and listeners on a reactor, whose operations return deferreds.
//
//   anydefer::reactor loop;
//   auto listener = anydefer::net::tcp_listener::bind(loop, anydefer::net::endpoint::loopback_v4(6380));
//   // in a deferred coroutine running on the loop thread:
//   anydefer::net::tcp_stream s = co_await listener.accept();
//   std::array<std::byte, 4096> buf;
//   while (std::size_t n = co_await s.read_some(buf)) {        // 0: the peer closed its side
//     co_await s.write_all(std::span(buf).first(n));
//   }
//
// Threads: a stream or listener belongs to the reactor it was made on, and its operations (read_some, write_all,
// accept, shutdown_write, close) are called on that reactor's loop thread (std::logic_error elsewhere); their
// deferreds fire there, so continuations that use the stream need no hop. connect() may be called from any thread.
// cancel() works from any thread; on another thread, the cancel of a read_some or write_all is carried out on the
// loop thread, where the operation may be using its buffer at that moment: its deferred fails there, a little
// later, unless the operation completed first (then the cancel is a no-op), or with executor_stopped_error if the
// reactor stops first; a thread that runs the loop itself (run(), run_once()) must let it run for that. A
// read_some or write_all started on the loop meanwhile carries the cancel out first. Destroying a stream or listener
// closes it; off the loop thread the close is forwarded there.
//
// Operations try their system call at once and wait only when it would block, so a read of data already
// received, or a write the socket buffer takes whole, costs no wait, and its deferred is fired on return. One
// exception: after a read that got fewer bytes than it asked for, the socket is taken as drained and the next
// read_some waits for readiness before it tries (a request/reply loop then makes no recv that fails with EAGAIN;
// the wait is level-triggered, so bytes already there are reported at once). At most
// one read_some (or accept) and one write_all are pending per stream: another fails with std::logic_error.
// Buffers given to read_some and write_all must stay valid until their deferred fires.
//
// Errors are failures carrying std::system_error with the errno (ECONNRESET, EPIPE, ECONNREFUSED...); a write to a
// peer that closed fails with EPIPE, never a SIGPIPE (MSG_NOSIGNAL). Closing a stream fails its pending operations
// with std::system_error(ECANCELED). If the reactor stops, pending operations fail with executor_stopped_error.
//
// Cancelling an operation fails its deferred with cancelled_error:
//   - read_some, accept: the stream (listener) stays usable; nothing is lost. A connection that a cancel from
//     another thread raced with is kept for the next accept.
//   - write_all: usable if the cancel came before any of its bytes was written (or after all were). A write_all
//     cancelled after writing part of its buffer leaves the peer with a partial message: every later write_all on
//     the stream fails with std::logic_error saying so (reads still work).
//   - connect: the socket is closed.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <source_location>
#include <span>
#include <string>
#include <string_view>

#include "anydefer/deferred.hpp"
#include "anydefer/executors/reactor.hpp"

namespace anydefer::net {

// An IPv4 or IPv6 address with a port.
class endpoint {
 public:
  // 0.0.0.0:0.
  endpoint() noexcept;

  // "127.0.0.1:6379", "[::1]:6379" (numeric addresses only: no name lookup). Throws std::invalid_argument naming
  // the text if it is not one.
  static endpoint parse(std::string_view text);
  static endpoint loopback_v4(std::uint16_t port = 0) noexcept;
  static endpoint loopback_v6(std::uint16_t port = 0) noexcept;
  static endpoint any_v4(std::uint16_t port = 0) noexcept;
  static endpoint any_v6(std::uint16_t port = 0) noexcept;
  // From a socket address the kernel gave; throws std::invalid_argument for a family other than AF_INET/AF_INET6.
  static endpoint from(const sockaddr* address, socklen_t size);

  std::uint16_t port() const noexcept;
  bool is_v6() const noexcept;
  int family() const noexcept;
  // As parse() reads it.
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }  // NOLINT
  socklen_t size() const noexcept { return size_; }

  friend bool operator==(const endpoint& a, const endpoint& b) noexcept;

 private:
  sockaddr_storage storage_{};
  socklen_t size_ = 0;
};

namespace detail {
class stream_core;
class listener_core;
}  // namespace detail

class tcp_stream {
 public:
  // Connects to `to` with a non-blocking socket (TCP_NODELAY set); fires on `loop`'s thread with the stream, or
  // fails with std::system_error (ECONNREFUSED, ETIMEDOUT, ENETUNREACH...). Thread-safe. Cancel closes the socket.
  static deferred<tcp_stream> connect(reactor& loop, const endpoint& to,
                                      std::source_location loc = std::source_location::current());

  // Adopts a connected socket (made non-blocking here). Throws std::system_error if it cannot be. Thread-safe.
  static tcp_stream adopt(reactor& loop, int fd);

  // Not a stream: every operation fails with std::logic_error.
  tcp_stream() noexcept;
  tcp_stream(tcp_stream&& other) noexcept;
  tcp_stream& operator=(tcp_stream&& other) noexcept;
  tcp_stream(const tcp_stream&) = delete;
  tcp_stream& operator=(const tcp_stream&) = delete;
  // close(); from another thread, forwarded to the loop thread.
  ~tcp_stream();

  // Reads what is available, up to into.size() bytes (at least one, waiting if none has arrived); 0 at end of
  // stream (or for an empty buffer).
  deferred<std::size_t> read_some(std::span<std::byte> into,
                                  std::source_location loc = std::source_location::current());
  // Writes every byte of `from`, waiting for room as often as needed.
  deferred<void> write_all(std::span<const std::byte> from, std::source_location loc = std::source_location::current());
  deferred<void> write_all(std::string_view from, std::source_location loc = std::source_location::current());

  // Sends end of stream (the peer's read_some then gives 0); reads still work. Throws std::system_error.
  void shutdown_write();
  // Fails pending operations with std::system_error(ECANCELED) and closes the socket. Idempotent.
  void close() noexcept;

  bool is_open() const noexcept;
  int native_handle() const noexcept;
  endpoint local_endpoint() const;   // throws std::system_error
  endpoint remote_endpoint() const;  // throws std::system_error
  reactor& owner() const;            // throws std::logic_error for a default-constructed stream

 private:
  explicit tcp_stream(detail::stream_core* core) noexcept : core_(core) {}
  friend class detail::stream_core;
  friend class detail::listener_core;
  detail::stream_core* core_ = nullptr;  // owned (intrusively counted: pending operations hold it too)
};

struct listen_options {
  int backlog = 1024;
  // SO_REUSEPORT: several listeners (one per shard of a reactor_group) bind the same port and the kernel spreads
  // connections between them; a connection then stays on the shard that accepted it.
  bool reuse_port = false;
};

class tcp_listener {
 public:
  // Binds and listens on `at` (port 0: the kernel picks one; see local_endpoint()). SO_REUSEADDR is set. Throws
  // std::system_error naming the endpoint (EADDRINUSE...). Thread-safe.
  static tcp_listener bind(reactor& loop, const endpoint& at, listen_options options = {});

  tcp_listener() noexcept;
  tcp_listener(tcp_listener&& other) noexcept;
  tcp_listener& operator=(tcp_listener&& other) noexcept;
  tcp_listener(const tcp_listener&) = delete;
  tcp_listener& operator=(const tcp_listener&) = delete;
  ~tcp_listener();

  // The next connection, as a stream on the listener's reactor (TCP_NODELAY set). Fails with std::system_error
  // for EMFILE/ENFILE/ENOBUFS/ENOMEM (the listener stays usable: retry later); connections the peer aborted
  // before they were accepted are skipped.
  deferred<tcp_stream> accept(std::source_location loc = std::source_location::current());

  // Fails a pending accept with std::system_error(ECANCELED) and closes the socket. Idempotent.
  void close() noexcept;

  bool is_open() const noexcept;
  int native_handle() const noexcept;
  endpoint local_endpoint() const;  // throws std::system_error

 private:
  detail::listener_core* core_ = nullptr;
};

}  // namespace anydefer::net
