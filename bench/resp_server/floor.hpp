// What B10's two floors (resp_epoll_floor, resp_uring_floor) share: the canned replies, the listener, the stop
// signals and how long they poll before they sleep. Neither has a keyspace, a deferred or a reactor.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "anydefer/net/tcp.hpp"
#include "resp.hpp"

namespace resp::floor {

// An idle floor polls for this long without blocking before it sleeps, as anydefer's reactors do (reactor.hpp,
// "Sleeping"): a request that arrives within it costs the client's send() no wake-up. Both floors and the
// reactors wait alike, so the floors stay floors.
inline constexpr std::chrono::microseconds idle_poll{20};

[[noreturn]] inline void die(const char* program, const char* what, int error) {
  std::fprintf(stderr, "%s: %s: %s\n", program, what, std::strerror(error));
  std::exit(2);
}

// Answers every complete request in `in` with a canned reply appended to `out` ("+PONG" for PING, an empty array
// for CONFIG and COMMAND, "+OK" for the rest); false if the connection must close (a protocol error).
inline bool answer(resp::input_buffer& in, resp::parser& parser, std::string& out) {
  for (;;) {
    const auto st = parser.next(in.unparsed());
    if (st == resp::parser::status::incomplete) return true;
    if (st == resp::parser::status::error) {
      resp::error(out, "ERR " + parser.error());
      return false;
    }
    const auto& a = parser.args();
    if (!a.empty()) {
      const std::string_view name = a[0];
      if (name == "PING" || name == "ping") {
        out.append("+PONG\r\n");
      } else if (name == "CONFIG" || name == "config" || name == "COMMAND" || name == "command") {
        out.append("*0\r\n");
      } else {
        out.append("+OK\r\n");
      }
    }
    in.consume(parser.consumed());
  }
}

struct listener {
  int fd = -1;
  std::string address;  // what it is bound to, with the port the kernel chose for port 0
};

// A listening TCP socket on `bind`:`port` (SO_REUSEADDR; `socket_flags` such as SOCK_NONBLOCK); exits with a
// message when it cannot bind.
inline listener listen_on(const char* program, const std::string& bind, unsigned long port, int socket_flags) {
  const auto at = anydefer::net::endpoint::parse(bind + ":" + std::to_string(port));
  listener l;
  l.fd = ::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC | socket_flags, 0);
  if (l.fd < 0) die(program, "socket", errno);
  const int one = 1;
  ::setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(l.fd, at.data(), at.size()) != 0) die(program, "bind", errno);
  if (::listen(l.fd, 1024) != 0) die(program, "listen", errno);
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof bound;
  ::getsockname(l.fd, reinterpret_cast<sockaddr*>(&bound), &bound_size);  // NOLINT: sockets API
  l.address =
      anydefer::net::endpoint::from(reinterpret_cast<const sockaddr*>(&bound), bound_size).to_string();  // NOLINT
  return l;
}

// SIGINT and SIGTERM, blocked and delivered through the returned signalfd (`flags` such as SFD_NONBLOCK).
inline int stop_signal_fd(int flags) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  return ::signalfd(-1, &stop_signals, SFD_CLOEXEC | flags);
}

}  // namespace resp::floor
