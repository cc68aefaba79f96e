#include "server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <queue>
#include <span>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/executors/reactor_group.hpp"
#include "anydefer/executors/timers.hpp"
#include "hash_table.hpp"

namespace resp_server {
namespace {

using anydefer::deferred;
using args_view = std::span<const std::string_view>;

// --- the keyspace of one shard -----------------------------------------------------------------------------------

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Strings with optional expiry. Expired keys go when touched (lazily) and, in the background, when the sweep finds
// their deadline passed (a heap of deadlines; an entry whose key was since rewritten is skipped).
class keyspace {
 public:
  struct entry {
    std::string value;
    std::int64_t expires_at = 0;  // ms on the steady clock; 0: never
  };

  // The key's entry, or nullptr if it is absent or expired (an expired one is erased here).
  entry* find(std::string_view key) {
    entry* e = table_.find(key);
    if (e != nullptr && e->expires_at != 0 && e->expires_at <= now_ms()) {
      table_.erase(key);
      return nullptr;
    }
    return e;
  }

  // find() of each key, in order, with the lookups' cache misses overlapped (hash_table::find_each): visit(i,
  // the entry of keys[i] or nullptr).
  template <class Visit>
  void find_each(args_view keys, Visit&& visit) {
    table_.find_each(keys, [&](std::size_t i, entry* e) {
      if (e != nullptr && e->expires_at != 0 && e->expires_at <= now_ms()) {
        table_.erase(keys[i]);
        e = nullptr;
      }
      visit(i, e);
    });
  }

  entry& upsert(std::string_view key) {
    if (entry* e = find(key)) return *e;
    return table_.insert(key);
  }

  // A key find() did not find.
  entry& insert(std::string_view key) { return table_.insert(key); }

  bool erase(std::string_view key) { return find(key) != nullptr && table_.erase(key); }

  void expire_at(std::string_view key, entry& e, std::int64_t when) {
    e.expires_at = when;
    if (when != 0) deadlines_.push({when, std::string(key)});
  }

  std::size_t size() {
    sweep(std::numeric_limits<std::size_t>::max());
    return table_.size();
  }
  void clear() {
    table_.clear();
    deadlines_ = {};
  }

  // Removes up to `budget` keys whose deadline passed, and moves a growth of the table on (one left idle ends).
  void sweep(std::size_t budget) {
    table_.step(4096);
    const std::int64_t now = now_ms();
    while (budget-- > 0 && !deadlines_.empty() && deadlines_.top().first <= now) {
      auto [when, key] = deadlines_.top();
      deadlines_.pop();
      entry* e = table_.find(key);
      if (e != nullptr && e->expires_at == when) table_.erase(key);
    }
  }

 private:
  using deadline = std::pair<std::int64_t, std::string>;
  hash_table<entry> table_;
  std::priority_queue<deadline, std::vector<deadline>, std::greater<>> deadlines_;
};

// --- commands ----------------------------------------------------------------------------------------------------

enum class command : std::uint8_t {
  unknown,
  ping,
  echo,
  get,
  set,
  del,
  exists,
  incr,
  incrby,
  decr,
  decrby,
  mget,
  mset,
  expire,
  ttl,
  pttl,
  dbsize,
  flushall,
  select,
  quit,
  command_,
  config,
  hello,
  client,
};

command lookup(std::string_view name) {
  static const std::unordered_map<std::string_view, command> table{
      {"PING", command::ping},     {"ECHO", command::echo},         {"GET", command::get},
      {"SET", command::set},       {"DEL", command::del},           {"EXISTS", command::exists},
      {"INCR", command::incr},     {"INCRBY", command::incrby},     {"DECR", command::decr},
      {"DECRBY", command::decrby}, {"MGET", command::mget},         {"MSET", command::mset},
      {"EXPIRE", command::expire}, {"TTL", command::ttl},           {"PTTL", command::pttl},
      {"DBSIZE", command::dbsize}, {"FLUSHALL", command::flushall}, {"SELECT", command::select},
      {"QUIT", command::quit},     {"COMMAND", command::command_},  {"CONFIG", command::config},
      {"HELLO", command::hello},   {"CLIENT", command::client},
  };
  std::array<char, 16> upper{};
  if (name.size() > upper.size()) return command::unknown;
  for (std::size_t i = 0; i < name.size(); ++i) {
    upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[i])));
  }
  const auto it = table.find(std::string_view(upper.data(), name.size()));
  return it == table.end() ? command::unknown : it->second;
}

bool equals_nocase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) == std::toupper(static_cast<unsigned char>(y));
         });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string wrong_arity(std::string_view name) {
  std::string out;
  resp::error(out, "ERR wrong number of arguments for '" + lower(name) + "' command");
  return out;
}

std::string error_reply(std::string_view text) {
  std::string out;
  resp::error(out, text);
  return out;
}

const std::string_view not_integer = "ERR value is not an integer or out of range";

// The commands on one key, run on the shard that owns it.
std::string run_keyed(keyspace& db, command c, args_view a) {
  std::string out;
  const std::string_view key = a[1];
  switch (c) {
    case command::get: {
      if (keyspace::entry* e = db.find(key)) {
        resp::bulk(out, e->value);
      } else {
        resp::null_bulk(out);
      }
      return out;
    }
    case command::set: {
      bool nx = false;
      bool xx = false;
      bool keep_ttl = false;
      bool get = false;
      std::int64_t expires = 0;
      for (std::size_t i = 3; i < a.size(); ++i) {
        if (equals_nocase(a[i], "NX")) {
          nx = true;
        } else if (equals_nocase(a[i], "XX")) {
          xx = true;
        } else if (equals_nocase(a[i], "KEEPTTL")) {
          keep_ttl = true;
        } else if (equals_nocase(a[i], "GET")) {
          get = true;
        } else if ((equals_nocase(a[i], "EX") || equals_nocase(a[i], "PX")) && i + 1 < a.size() && expires == 0) {
          const auto n = resp::to_integer(a[i + 1]);
          if (!n) return error_reply(not_integer);
          const long long unit = equals_nocase(a[i], "EX") ? 1000 : 1;
          if (*n <= 0 || *n > std::numeric_limits<long long>::max() / 1000) {
            return error_reply("ERR invalid expire time in 'set' command");
          }
          expires = now_ms() + *n * unit;
          ++i;
        } else {
          return error_reply("ERR syntax error");
        }
      }
      if ((nx && xx) || (keep_ttl && expires != 0)) return error_reply("ERR syntax error");
      keyspace::entry* existing = db.find(key);
      if (get) {
        if (existing != nullptr) {
          resp::bulk(out, existing->value);
        } else {
          resp::null_bulk(out);
        }
      }
      if ((nx && existing != nullptr) || (xx && existing == nullptr)) {
        if (!get) resp::null_bulk(out);
        return out;
      }
      keyspace::entry& e = existing != nullptr ? *existing : db.insert(key);
      e.value.assign(a[2]);
      if (!keep_ttl) db.expire_at(key, e, expires);
      if (!get) resp::simple(out, "OK");
      return out;
    }
    case command::incr:
    case command::decr:
    case command::incrby:
    case command::decrby: {
      long long by = c == command::decr ? -1 : 1;
      if (c == command::incrby || c == command::decrby) {
        const auto n = resp::to_integer(a[2]);
        if (!n) return error_reply(not_integer);
        if (c == command::decrby && *n == std::numeric_limits<long long>::min()) {
          return error_reply("ERR decrement would overflow");
        }
        by = c == command::decrby ? -*n : *n;
      }
      keyspace::entry* e = db.find(key);
      long long value = 0;
      if (e != nullptr) {
        const auto n = resp::to_integer(e->value);
        if (!n) return error_reply(not_integer);
        value = *n;
      }
      long long result = 0;
      if (__builtin_add_overflow(value, by, &result)) {
        return error_reply("ERR increment or decrement would overflow");
      }
      keyspace::entry& target = e != nullptr ? *e : db.insert(key);
      target.value = std::to_string(result);
      resp::integer(out, result);
      return out;
    }
    case command::expire: {
      const auto n = resp::to_integer(a[2]);
      if (!n) return error_reply(not_integer);
      if (a.size() > 3) return error_reply("ERR Unsupported option " + std::string(a[3]));
      keyspace::entry* e = db.find(key);
      if (e == nullptr) {
        resp::integer(out, 0);
        return out;
      }
      if (*n <= 0) {
        db.erase(key);
      } else {
        if (*n > std::numeric_limits<long long>::max() / 1000 - now_ms()) {
          return error_reply("ERR invalid expire time in 'expire' command");
        }
        db.expire_at(key, *e, now_ms() + *n * 1000);
      }
      resp::integer(out, 1);
      return out;
    }
    case command::ttl:
    case command::pttl: {
      keyspace::entry* e = db.find(key);
      if (e == nullptr) {
        resp::integer(out, -2);
      } else if (e->expires_at == 0) {
        resp::integer(out, -1);
      } else {
        const std::int64_t left = e->expires_at - now_ms();
        resp::integer(out, c == command::pttl ? left : (left + 500) / 1000);
      }
      return out;
    }
    default:
      return error_reply("ERR internal: not a single-key command");
  }
}

// Smallest argument count per single-key command (the command name included), and whether more are allowed.
std::optional<std::pair<std::size_t, bool>> keyed_arity(command c) {
  switch (c) {
    case command::get:
    case command::incr:
    case command::decr:
    case command::ttl:
    case command::pttl:
      return std::pair{std::size_t{2}, false};
    case command::incrby:
    case command::decrby:
      return std::pair{std::size_t{3}, false};
    case command::expire:
      return std::pair{std::size_t{3}, true};
    case command::set:
      return std::pair{std::size_t{3}, true};
    default:
      return std::nullopt;
  }
}

// Owned copies of a command's arguments, for a shard that runs it later.
struct owned_args {
  explicit owned_args(args_view a) : strings(a.begin(), a.end()) { views.assign(strings.begin(), strings.end()); }
  owned_args(owned_args&& other) noexcept = default;
  std::vector<std::string> strings;
  std::vector<std::string_view> views;  // into strings (a moved vector keeps its heap buffer)
};

}  // namespace

// --- the server --------------------------------------------------------------------------------------------------

struct server::impl {
  struct shard {
    anydefer::reactor* loop = nullptr;
    keyspace db;
    anydefer::net::tcp_listener listener;
    std::optional<anydefer::looping_call> sweeper;
  };

  explicit impl(const config& c)
      : cfg(c), group(c.shards == 0 ? std::thread::hardware_concurrency() : c.shards, c.pin) {
    const anydefer::net::endpoint at = anydefer::net::endpoint::parse(
        cfg.bind.find(':') != std::string::npos ? "[" + cfg.bind + "]:" + std::to_string(cfg.port)
                                                : cfg.bind + ":" + std::to_string(cfg.port));
    shards.resize(group.size());
    for (std::size_t i = 0; i < group.size(); ++i) {
      shards[i] = std::make_unique<shard>();
      shards[i]->loop = &group.shard(i);
    }
    // One listener per shard on one port (SO_REUSEPORT); the first picks the port when 0 was asked for. A port
    // that another program holds must fail as it does for Redis, even if that program also set SO_REUSEPORT
    // (the kernel would then split the connections between the two): a listener bound without it first finds out.
    const bool shared = group.size() > 1;
    if (shared && at.port() != 0) probe_port(at);
    anydefer::net::endpoint bound = at;
    for (std::size_t i = 0; i < group.size(); ++i) {
      shards[i]->listener =
          anydefer::net::tcp_listener::bind(group.shard(i), bound, {.backlog = 1024, .reuse_port = shared});
      if (i == 0) bound = shards[0]->listener.local_endpoint();
    }
    endpoint = bound;
    for (std::size_t i = 0; i < group.size(); ++i) {
      shard& s = *shards[i];
      anydefer::submit(*s.loop, [this, &s] {
        s.sweeper.emplace(*s.loop, [&s] { s.db.sweep(200); });
        s.sweeper->start(std::chrono::milliseconds(100)).add_errback([](const anydefer::failure&) {});
        accept_loop(s);
      }).get();
    }
  }

  // Throws std::system_error (EADDRINUSE) if `at` cannot be bound by a socket without SO_REUSEPORT. A plain
  // socket, closed before this returns (a listener destroyed off its loop thread closes a moment later).
  static void probe_port(const anydefer::net::endpoint& at) {
    const int fd = ::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "resp_server: socket");
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const int rc = ::bind(fd, at.data(), at.size());
    const int error = errno;
    ::close(fd);
    if (rc != 0) throw std::system_error(error, std::generic_category(), "resp_server: bind " + at.to_string());
  }

  std::size_t shard_of(std::string_view key) const noexcept {
    return shards.size() == 1 ? 0 : std::hash<std::string_view>{}(key) % shards.size();
  }

  // --- accepting -------------------------------------------------------------------------------------------------

  deferred<void> accept_loop(shard& home) {
    for (;;) {
      anydefer::net::tcp_stream s;
      bool pause = false;
      try {
        s = co_await home.listener.accept();
      } catch (const std::system_error& e) {
        if (e.code().value() == ECANCELED) co_return;  // the listener closed
        // Out of descriptors or memory: the listener stays usable; try again shortly.
        std::fprintf(stderr, "resp_server: accept: %s\n", e.what());
        pause = true;
      } catch (const anydefer::executor_stopped_error&) {
        co_return;
      }
      if (pause) {
        co_await anydefer::call_later(*home.loop, std::chrono::milliseconds(10));
        continue;
      }
      if (clients.fetch_add(1, std::memory_order_relaxed) >= cfg.max_clients) {
        clients.fetch_sub(1, std::memory_order_relaxed);
        refuse(std::move(s));
        continue;
      }
      serve(home, std::move(s));  // runs on; it ends itself and counts itself out
    }
  }

  deferred<void> refuse(anydefer::net::tcp_stream s) {
    try {
      co_await s.write_all(std::string_view("-ERR max number of clients reached\r\n"));
    } catch (const std::exception&) {
      // The client went first: nothing to tell it.
    }
  }

  // --- one connection --------------------------------------------------------------------------------------------

  deferred<void> serve(shard& home, anydefer::net::tcp_stream s) {
    try {
      co_await connection(home, s);
    } catch (const std::exception&) {
      // A reset, a stop: the connection is over; its stream closes as this frame ends.
    }
    clients.fetch_sub(1, std::memory_order_relaxed);
  }

  deferred<void> connection(shard& home, anydefer::net::tcp_stream& s) {
    resp::input_buffer in;
    resp::parser parser(cfg.limits);
    std::string out;
    std::vector<deferred<std::string>> replies;
    std::string name;
    bool closing = false;
    while (!closing) {
      constexpr std::size_t read_size = 16 * 1024;
      const std::size_t n = co_await s.read_some(std::as_writable_bytes(std::span(in.prepare(read_size), read_size)));
      if (n == 0) co_return;
      in.commit(n);
      for (;;) {
        const resp::parser::status st = parser.next(in.unparsed());
        if (st == resp::parser::status::incomplete) {
          if (parser.bytes_needed() > 0) in.reserve_request(parser.bytes_needed());
          break;
        }
        if (st == resp::parser::status::error) {
          std::string reply;
          resp::error(reply, "ERR " + parser.error());
          replies.push_back(anydefer::succeed(std::move(reply)));
          closing = true;
          break;
        }
        const auto& a = parser.args();
        if (!a.empty()) {
          const command c = lookup(a[0]);
          if (c == command::quit) {
            replies.push_back(anydefer::succeed(std::string("+OK\r\n")));
            closing = true;
          } else {
            replies.push_back(dispatch(home, c, a, name));
          }
        }
        in.consume(parser.consumed());
        if (closing) break;
      }
      for (deferred<std::string>& r : replies) {
        out += co_await r;
        if (!home.loop->running_in_this_thread()) co_await anydefer::resume_on(*home.loop);
      }
      replies.clear();
      if (!out.empty()) {
        co_await s.write_all(out);
        out.clear();
      }
    }
  }

  // --- dispatch (on the connection's shard) ----------------------------------------------------------------------

  deferred<std::string> dispatch(shard& home, command c, args_view a, std::string& client_name) {
    if (const auto arity = keyed_arity(c)) {
      if (a.size() < arity->first || (!arity->second && a.size() > arity->first)) {
        return anydefer::succeed(wrong_arity(a[0]));
      }
      shard& owner = *shards[shard_of(a[1])];
      if (&owner == &home) return anydefer::succeed(run_keyed(home.db, c, a));
      return anydefer::submit(*owner.loop,
                              [&owner, c, args = owned_args(a)] { return run_keyed(owner.db, c, args.views); });
    }
    switch (c) {
      case command::ping: {
        std::string out;
        if (a.size() > 2) return anydefer::succeed(wrong_arity(a[0]));
        if (a.size() == 2) {
          resp::bulk(out, a[1]);
        } else {
          resp::simple(out, "PONG");
        }
        return anydefer::succeed(std::move(out));
      }
      case command::echo: {
        if (a.size() != 2) return anydefer::succeed(wrong_arity(a[0]));
        std::string out;
        resp::bulk(out, a[1]);
        return anydefer::succeed(std::move(out));
      }
      case command::del:
      case command::exists:
        if (a.size() < 2) return anydefer::succeed(wrong_arity(a[0]));
        return count_keys(home, c, a.subspan(1));
      case command::mget:
        if (a.size() < 2) return anydefer::succeed(wrong_arity(a[0]));
        return mget(home, a.subspan(1));
      case command::mset:
        if (a.size() < 3 || a.size() % 2 == 0) return anydefer::succeed(wrong_arity(a[0]));
        return mset(home, a.subspan(1));
      case command::dbsize:
        if (a.size() != 1) return anydefer::succeed(wrong_arity(a[0]));
        return on_every_shard<long long>([](shard& s) { return static_cast<long long>(s.db.size()); },
                                         [](std::vector<long long> sizes) {
                                           std::string out;
                                           long long total = 0;
                                           for (long long n : sizes) total += n;
                                           resp::integer(out, total);
                                           return out;
                                         });
      case command::flushall:
        if (a.size() > 2 || (a.size() == 2 && !equals_nocase(a[1], "SYNC") && !equals_nocase(a[1], "ASYNC"))) {
          return anydefer::succeed(error_reply("ERR syntax error"));
        }
        return on_every_shard<int>(
            [](shard& s) {
              s.db.clear();
              return 0;
            },
            [](const std::vector<int>&) { return std::string("+OK\r\n"); });
      case command::select: {
        if (a.size() != 2) return anydefer::succeed(wrong_arity(a[0]));
        const auto db = resp::to_integer(a[1]);
        if (!db) return anydefer::succeed(error_reply(not_integer));
        if (*db != 0) return anydefer::succeed(error_reply("ERR DB index is out of range"));
        return anydefer::succeed(std::string("+OK\r\n"));
      }
      case command::command_:
        return anydefer::succeed(command_command(a));
      case command::config:
        return anydefer::succeed(config_command(a));
      case command::hello:
        return anydefer::succeed(hello_command(a, client_name));
      case command::client:
        return anydefer::succeed(client_command(a, client_name));
      default: {
        std::string text = "ERR unknown command '" + std::string(a[0]) + "', with args beginning with: ";
        for (std::size_t i = 1; i < a.size() && i < 4; ++i) text += "'" + std::string(a[i].substr(0, 128)) + "' ";
        return anydefer::succeed(error_reply(text));
      }
    }
  }

  // Runs `part` on every shard (its own keyspace) and `combine` on their results, in shard order.
  template <class T, class Part, class Combine>
  deferred<std::string> on_every_shard(Part part, Combine combine) {
    std::vector<deferred<T>> parts;
    parts.reserve(shards.size());
    for (auto& s : shards) {
      parts.push_back(anydefer::submit(*s->loop, [&s = *s, part] { return part(s); }));
    }
    return anydefer::gather(parts).add_callback(std::move(combine));
  }

  // DEL and EXISTS: how many of the keys each shard has (and removes, for DEL), summed.
  deferred<std::string> count_keys(shard& home, command c, args_view keys) {
    const auto count_on = [c](keyspace& db, args_view owned) {
      long long n = 0;
      for (std::string_view k : owned) {
        if (c == command::del ? db.erase(k) : db.find(k) != nullptr) ++n;
      }
      return n;
    };
    if (shards.size() == 1) {
      std::string out;
      resp::integer(out, count_on(home.db, keys));
      return anydefer::succeed(std::move(out));
    }
    std::vector<std::vector<std::string_view>> by_shard(shards.size());
    for (std::string_view k : keys) by_shard[shard_of(k)].push_back(k);
    std::vector<deferred<long long>> parts;
    for (std::size_t i = 0; i < shards.size(); ++i) {
      if (by_shard[i].empty()) continue;
      shard& owner = *shards[i];
      if (&owner == &home) {
        parts.push_back(anydefer::succeed(count_on(home.db, by_shard[i])));
      } else {
        parts.push_back(anydefer::submit(*owner.loop, [&owner, count_on, args = owned_args(by_shard[i])] {
          return count_on(owner.db, args.views);
        }));
      }
    }
    return anydefer::gather(parts).add_callback([](const std::vector<long long>& counts) {
      std::string out;
      long long total = 0;
      for (long long n : counts) total += n;
      resp::integer(out, total);
      return out;
    });
  }

  deferred<std::string> mget(shard& home, args_view keys) {
    using values = std::vector<std::optional<std::string>>;
    const auto get_on = [](keyspace& db, args_view owned) {
      values got;
      got.reserve(owned.size());
      db.find_each(owned, [&](std::size_t, keyspace::entry* e) {
        if (e != nullptr) {
          got.emplace_back(e->value);
        } else {
          got.emplace_back();
        }
      });
      return got;
    };
    const auto encode = [](std::string& out, const std::optional<std::string>& v) {
      if (v) {
        resp::bulk(out, *v);
      } else {
        resp::null_bulk(out);
      }
    };
    if (shards.size() == 1) {
      std::string out;
      resp::array_header(out, keys.size());
      home.db.find_each(keys, [&](std::size_t, keyspace::entry* e) {
        if (e != nullptr) {
          resp::bulk(out, e->value);
        } else {
          resp::null_bulk(out);
        }
      });
      return anydefer::succeed(std::move(out));
    }
    std::vector<std::vector<std::string_view>> by_shard(shards.size());
    std::vector<std::pair<std::size_t, std::size_t>> where;  // per key: its shard's part, its index there
    std::vector<std::size_t> part_of_shard(shards.size(), 0);
    for (std::string_view k : keys) {
      const std::size_t i = shard_of(k);
      where.emplace_back(i, by_shard[i].size());
      by_shard[i].push_back(k);
    }
    std::vector<deferred<values>> parts;
    for (std::size_t i = 0; i < shards.size(); ++i) {
      part_of_shard[i] = parts.size();
      if (by_shard[i].empty()) continue;
      shard& owner = *shards[i];
      if (&owner == &home) {
        parts.push_back(anydefer::succeed(get_on(home.db, by_shard[i])));
      } else {
        parts.push_back(anydefer::submit(
            *owner.loop, [&owner, get_on, args = owned_args(by_shard[i])] { return get_on(owner.db, args.views); }));
      }
    }
    return anydefer::gather(parts).add_callback(
        [where = std::move(where), part_of_shard = std::move(part_of_shard), encode](const std::vector<values>& got) {
          std::string out;
          resp::array_header(out, where.size());
          for (const auto& [s, index] : where) encode(out, got[part_of_shard[s]][index]);
          return out;
        });
  }

  deferred<std::string> mset(shard& home, args_view pairs) {
    const auto set_on = [](keyspace& db, args_view owned) {
      for (std::size_t i = 0; i + 1 < owned.size(); i += 2) {
        keyspace::entry& e = db.upsert(owned[i]);
        e.value.assign(owned[i + 1]);
        db.expire_at(owned[i], e, 0);
      }
      return 0;
    };
    if (shards.size() == 1) {
      set_on(home.db, pairs);
      return anydefer::succeed(std::string("+OK\r\n"));
    }
    std::vector<std::vector<std::string_view>> by_shard(shards.size());
    for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
      auto& part = by_shard[shard_of(pairs[i])];
      part.push_back(pairs[i]);
      part.push_back(pairs[i + 1]);
    }
    std::vector<deferred<int>> parts;
    for (std::size_t i = 0; i < shards.size(); ++i) {
      if (by_shard[i].empty()) continue;
      shard& owner = *shards[i];
      if (&owner == &home) {
        parts.push_back(anydefer::succeed(set_on(home.db, by_shard[i])));
      } else {
        parts.push_back(anydefer::submit(
            *owner.loop, [&owner, set_on, args = owned_args(by_shard[i])] { return set_on(owner.db, args.views); }));
      }
    }
    return anydefer::gather(parts).add_callback([](const std::vector<int>&) { return std::string("+OK\r\n"); });
  }

  // --- what redis-cli and redis-benchmark ask at start --------------------------------------------------------

  static std::string command_command(args_view a) {
    std::string out;
    if (a.size() >= 2 && equals_nocase(a[1], "COUNT")) {
      resp::integer(out, 23);
    } else {
      resp::array_header(out, 0);  // COMMAND, COMMAND DOCS: no command table (clients then give no hints)
    }
    return out;
  }

  static std::string config_command(args_view a) {
    std::string out;
    if (a.size() < 2) return wrong_arity(a[0]);
    if (!equals_nocase(a[1], "GET")) {
      return error_reply("ERR unknown subcommand '" + std::string(a[1]) + "'. Only CONFIG GET is supported.");
    }
    if (a.size() < 3) return wrong_arity("config|get");
    std::vector<std::pair<std::string_view, std::string_view>> found;
    for (std::size_t i = 2; i < a.size(); ++i) {
      if (equals_nocase(a[i], "save")) found.emplace_back("save", "");
      if (equals_nocase(a[i], "appendonly")) found.emplace_back("appendonly", "no");
      if (equals_nocase(a[i], "databases")) found.emplace_back("databases", "1");
    }
    resp::array_header(out, found.size() * 2);
    for (const auto& [k, v] : found) {
      resp::bulk(out, k);
      resp::bulk(out, v);
    }
    return out;
  }

  static std::string hello_command(args_view a, std::string& client_name) {
    std::size_t i = 1;
    if (a.size() >= 2) {
      const auto version = resp::to_integer(a[1]);
      if (!version) return error_reply("ERR Protocol version is not an integer or out of range");
      if (*version != 2) return error_reply("NOPROTO sorry, this protocol version is not supported");
      i = 2;
    }
    for (; i < a.size(); ++i) {
      if (equals_nocase(a[i], "SETNAME") && i + 1 < a.size()) {
        client_name.assign(a[++i]);
      } else if (equals_nocase(a[i], "AUTH") && i + 2 < a.size()) {
        return error_reply("ERR AUTH called without any password configured for the default user");
      } else {
        return error_reply("ERR Syntax error in HELLO option '" + std::string(a[i]) + "'");
      }
    }
    std::string out;
    resp::array_header(out, 14);
    resp::bulk(out, "server");
    resp::bulk(out, "anydefer-resp");
    resp::bulk(out, "version");
    resp::bulk(out, "7.0.0");
    resp::bulk(out, "proto");
    resp::integer(out, 2);
    resp::bulk(out, "id");
    resp::integer(out, 1);
    resp::bulk(out, "mode");
    resp::bulk(out, "standalone");
    resp::bulk(out, "role");
    resp::bulk(out, "master");
    resp::bulk(out, "modules");
    resp::array_header(out, 0);
    return out;
  }

  static std::string client_command(args_view a, std::string& client_name) {
    std::string out;
    if (a.size() < 2) return wrong_arity(a[0]);
    if (equals_nocase(a[1], "SETNAME")) {
      if (a.size() != 3) return wrong_arity("client|setname");
      if (a[2].find_first_of(" \n") != std::string_view::npos) {
        return error_reply("ERR Client names cannot contain spaces, newlines or special characters.");
      }
      client_name.assign(a[2]);
      resp::simple(out, "OK");
    } else if (equals_nocase(a[1], "GETNAME")) {
      if (client_name.empty()) {
        resp::null_bulk(out);
      } else {
        resp::bulk(out, client_name);
      }
    } else if (equals_nocase(a[1], "SETINFO")) {
      resp::simple(out, "OK");
    } else {
      return error_reply("ERR unknown subcommand '" + std::string(a[1]) + "'. Try CLIENT SETNAME, GETNAME.");
    }
    return out;
  }

  void stop() noexcept {
    if (stopped.exchange(true)) return;
    group.stop();  // abandons every accept and read: the coroutines end and close their streams
  }

  config cfg;
  std::atomic<std::size_t> clients{0};
  std::atomic<bool> stopped{false};
  anydefer::net::endpoint endpoint;
  // Declared before the shards, so their listeners and keyspaces go first (after stop(), on this thread).
  anydefer::reactor_group group;
  std::vector<std::unique_ptr<shard>> shards;
};

server::server(const config& c) : impl_(std::make_unique<impl>(c)) {}
server::~server() { stop(); }
anydefer::net::endpoint server::local_endpoint() const { return impl_->endpoint; }
std::size_t server::shards() const noexcept { return impl_->shards.size(); }
std::size_t server::clients() const noexcept { return impl_->clients.load(std::memory_order_relaxed); }
void server::stop() noexcept { impl_->stop(); }

}  // namespace resp_server
