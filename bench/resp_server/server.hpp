// server.hpp: a Redis-protocol (RESP2) key-value server on anydefer's reactors.
//
// One reactor per shard (a reactor_group), each accepting on its own SO_REUSEPORT listener, so a connection stays
// on the shard the kernel gave it. The keyspace is split across shards by key hash; a command for a key another
// shard owns is forwarded there and its reply comes back as a deferred (MGET, MSET, DEL, EXISTS, DBSIZE and
// FLUSHALL gather from every shard involved). Every request is a deferred<std::string> reply; pipelined requests
// are parsed together and answered in order, their replies written in one batch.
//
// Commands: PING, ECHO, GET, SET (EX/PX/NX/XX/KEEPTTL/GET), DEL, EXISTS, INCR, INCRBY, DECR, DECRBY, MGET, MSET,
// EXPIRE, TTL, PTTL, DBSIZE, FLUSHALL, SELECT 0, QUIT, and enough of COMMAND, CONFIG GET, HELLO and CLIENT for
// redis-cli and redis-benchmark. Anything else: -ERR unknown command.
//
// Bad input: malformed RESP, a bulk string or an array above the limits, gets "-ERR Protocol error: ..." and the
// connection is closed; nothing else is affected. Past max_clients, a new connection gets "-ERR max number of
// clients reached" and is closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "anydefer/net/tcp.hpp"
#include "resp.hpp"

namespace resp_server {

struct config {
  std::string bind = "127.0.0.1";  // a numeric IPv4 or IPv6 address
  std::uint16_t port = 6379;       // 0: the kernel picks one (see server::local_endpoint())
  std::size_t shards = 1;          // 0: one per CPU
  bool pin = false;                // shard i on CPU i
  std::size_t max_clients = 10000;
  resp::limits limits;
};

class server {
 public:
  // Starts the shards and listens. Throws std::system_error (the port is taken...), std::invalid_argument (a bad
  // address).
  explicit server(const config& c);
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  // stop().
  ~server();

  anydefer::net::endpoint local_endpoint() const;
  std::size_t shards() const noexcept;
  // Connections open now.
  std::size_t clients() const noexcept;

  // Stops accepting, closes every connection (a request being answered is dropped with it) and joins the shards.
  // Idempotent.
  void stop() noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace resp_server
