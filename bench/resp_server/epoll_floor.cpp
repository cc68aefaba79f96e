// resp_epoll_floor: the floor for B10. One thread, one epoll loop written directly on the system calls, parsing
// requests with the same RESP parser as resp_server and answering each with a canned reply ("+OK", "+PONG", or an
// empty array for CONFIG/COMMAND), with no keyspace, no deferred and no reactor. resp_server's cost per request
// above this is what the deferreds, the reactor and the keyspace cost.
//
//   resp_epoll_floor [--bind 127.0.0.1] [--port 6379]
//
// Prints "resp_epoll_floor: listening on ADDRESS:PORT" once it listens; SIGINT/SIGTERM stop it (exit 0).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "anydefer/net/tcp.hpp"
#include "resp.hpp"

namespace {

struct connection {
  resp::input_buffer in;
  resp::parser parser;
  std::string out;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "resp_epoll_floor: %s: %s\n", what, std::strerror(errno));
  std::exit(2);
}

// Answers every complete request in `c.in`; false if the connection must close (a protocol error).
bool answer(connection& c) {
  for (;;) {
    const auto st = c.parser.next(c.in.unparsed());
    if (st == resp::parser::status::incomplete) return true;
    if (st == resp::parser::status::error) {
      resp::error(c.out, "ERR " + c.parser.error());
      return false;
    }
    const auto& a = c.parser.args();
    if (!a.empty()) {
      const std::string_view name = a[0];
      if (name == "PING" || name == "ping") {
        c.out.append("+PONG\r\n");
      } else if (name == "CONFIG" || name == "config" || name == "COMMAND" || name == "command") {
        c.out.append("*0\r\n");
      } else {
        c.out.append("+OK\r\n");
      }
    }
    c.in.consume(c.parser.consumed());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string bind = "127.0.0.1";
  unsigned long port = 6379;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view arg = argv[i];
    if (arg == "--bind") {
      bind = argv[i + 1];
    } else if (arg == "--port") {
      port = std::strtoul(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "resp_epoll_floor: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  const auto at = anydefer::net::endpoint::parse(bind + ":" + std::to_string(port));
  const int listener = ::socket(at.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener, at.data(), at.size()) != 0) die("bind");
  if (::listen(listener, 1024) != 0) die("listen");
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof bound;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &bound_size);  // NOLINT: the sockets API

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  const int signal_fd = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);

  const int poller = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  ::epoll_ctl(poller, EPOLL_CTL_ADD, listener, &ev);
  ev.data.fd = signal_fd;
  ::epoll_ctl(poller, EPOLL_CTL_ADD, signal_fd, &ev);
  std::printf("resp_epoll_floor: listening on %s\n",
              anydefer::net::endpoint::from(reinterpret_cast<const sockaddr*>(&bound), bound_size)  // NOLINT
                  .to_string()
                  .c_str());
  std::fflush(stdout);

  std::unordered_map<int, std::unique_ptr<connection>> connections;
  const auto drop = [&](int fd) {
    ::close(fd);  // also leaves the epoll set
    connections.erase(fd);
  };
  epoll_event events[256];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  for (;;) {
    const int n = ::epoll_wait(poller, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == signal_fd) {
        for (auto& [cfd, c] : connections) ::close(cfd);
        std::printf("resp_epoll_floor: stopped\n");
        return 0;
      }
      if (fd == listener) {
        for (;;) {
          const int cfd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = cfd;
          ::epoll_ctl(poller, EPOLL_CTL_ADD, cfd, &cev);
          connections.emplace(cfd, std::make_unique<connection>());
        }
        continue;
      }
      connection& c = *connections.at(fd);
      const ssize_t got = ::recv(fd, c.in.prepare(16384), 16384, 0);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(fd);
        continue;
      }
      c.in.commit(static_cast<std::size_t>(got));
      const bool keep = answer(c);
      // Replies are small and the client reads them: a blocking-free send that takes them whole, as Redis's
      // own write before it sleeps; a partial send (a client not reading) drops the connection here.
      const ssize_t sent = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      const bool whole = sent == static_cast<ssize_t>(c.out.size());
      c.out.clear();
      if (!keep || !whole) drop(fd);
    }
  }
}
