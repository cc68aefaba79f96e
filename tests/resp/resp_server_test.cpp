// The RESP server (bench/resp_server) driven over 127.0.0.1 with an ephemeral port: every command, pipelining,
// keys across shards, expiry, each bad input, disconnects, the connection limit, graceful stop of the program by
// SIGINT/SIGTERM, and redis-cli (Debian's redis-tools) against it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "resp.hpp"
#include "resp_client.hpp"
#include "server.hpp"

namespace {

using namespace std::chrono_literals;
using resp_test::client;
using resp_test::command;

resp_server::config test_config(std::size_t shards) {
  resp_server::config c;
  c.port = 0;
  c.shards = shards;
  c.limits.max_bulk = 1024;  // the lower test value
  c.limits.max_array = 64;
  c.limits.max_inline = 256;
  return c;
}

template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

class RespServer : public testing::TestWithParam<std::size_t> {
 protected:
  RespServer() : server_(test_config(GetParam())) {}
  resp_server::server server_;
};

TEST_P(RespServer, PingEchoSelectAndUnknownCommands) {
  client c(server_.local_endpoint());
  EXPECT_EQ(c.call({"PING"}).text, "PONG");
  EXPECT_EQ(c.call({"ping", "hi"}).text, "hi");
  EXPECT_EQ(c.call({"ECHO", "a b"}).text, "a b");
  EXPECT_EQ(c.call({"SELECT", "0"}).text, "OK");
  EXPECT_EQ(c.call({"SELECT", "1"}).text, "ERR DB index is out of range");
  const auto unknown = c.call({"FROB", "x", "y"});
  EXPECT_EQ(unknown.type, '-');
  EXPECT_EQ(unknown.text, "ERR unknown command 'FROB', with args beginning with: 'x' 'y' ");
  EXPECT_EQ(c.call({"GET"}).text, "ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(c.call({"ECHO"}).text, "ERR wrong number of arguments for 'echo' command");
  EXPECT_EQ(c.call({"GET", "a", "b"}).text, "ERR wrong number of arguments for 'get' command");
}

TEST_P(RespServer, SetAndGetWithTheirOptions) {
  client c(server_.local_endpoint());
  EXPECT_TRUE(c.call({"GET", "k"}).is_null());
  EXPECT_EQ(c.call({"SET", "k", "v1"}).text, "OK");
  EXPECT_EQ(c.call({"GET", "k"}).text, "v1");
  EXPECT_TRUE(c.call({"SET", "k", "v2", "NX"}).is_null());
  EXPECT_EQ(c.call({"GET", "k"}).text, "v1");
  EXPECT_EQ(c.call({"SET", "k", "v2", "XX"}).text, "OK");
  EXPECT_TRUE(c.call({"SET", "absent", "v", "XX"}).is_null());
  EXPECT_TRUE(c.call({"GET", "absent"}).is_null());
  EXPECT_EQ(c.call({"SET", "k", "v3", "GET"}).text, "v2");
  EXPECT_EQ(c.call({"SET", "k", "v", "NX", "XX"}).text, "ERR syntax error");
  EXPECT_EQ(c.call({"SET", "k", "v", "BOGUS"}).text, "ERR syntax error");
  EXPECT_EQ(c.call({"SET", "k", "v", "EX", "x"}).text, "ERR value is not an integer or out of range");
  EXPECT_EQ(c.call({"SET", "k", "v", "EX", "0"}).text, "ERR invalid expire time in 'set' command");
  EXPECT_EQ(c.call({"SET", "k", "v", "EX"}).text, "ERR syntax error");
  EXPECT_EQ(c.call({"GET", "k"}).text, "v3");  // none of the refused SETs changed it
  // Binary-safe values.
  const std::string binary("a\0\r\nb", 5);
  EXPECT_EQ(c.call({"SET", "bin", binary}).text, "OK");
  EXPECT_EQ(c.call({"GET", "bin"}).text, binary);
  // Binary-safe keys, the empty one among them, each apart from its prefixes.
  EXPECT_EQ(c.call({"SET", "", "empty"}).text, "OK");
  EXPECT_EQ(c.call({"SET", binary, "binary"}).text, "OK");
  EXPECT_EQ(c.call({"SET", std::string("a\0", 2), "a0"}).text, "OK");
  EXPECT_EQ(c.call({"GET", ""}).text, "empty");
  EXPECT_EQ(c.call({"GET", binary}).text, "binary");
  EXPECT_EQ(c.call({"GET", std::string("a\0", 2)}).text, "a0");
  EXPECT_TRUE(c.call({"GET", "a"}).is_null());
  EXPECT_EQ(c.call({"DEL", ""}).number, 1);
  EXPECT_TRUE(c.call({"GET", ""}).is_null());
}

TEST_P(RespServer, ExpiryByExPxAndExpireAndTtl) {
  client c(server_.local_endpoint());
  EXPECT_EQ(c.call({"SET", "short", "v", "PX", "60"}).text, "OK");
  EXPECT_EQ(c.call({"SET", "long", "v", "EX", "100"}).text, "OK");
  EXPECT_EQ(c.call({"SET", "plain", "v"}).text, "OK");
  const long long ttl = c.call({"TTL", "long"}).number;
  EXPECT_TRUE(ttl == 100 || ttl == 99) << ttl;
  EXPECT_EQ(c.call({"TTL", "plain"}).number, -1);
  EXPECT_EQ(c.call({"TTL", "missing"}).number, -2);
  EXPECT_GT(c.call({"PTTL", "short"}).number, 0);
  std::this_thread::sleep_for(120ms);
  const auto several = c.call({"MGET", "long", "short", "plain", "short"});  // an expired key among live ones
  ASSERT_EQ(several.items.size(), 4U);
  EXPECT_EQ(several.items[0].text, "v");
  EXPECT_TRUE(several.items[1].is_null());
  EXPECT_EQ(several.items[2].text, "v");
  EXPECT_TRUE(several.items[3].is_null());
  EXPECT_TRUE(c.call({"GET", "short"}).is_null());
  EXPECT_EQ(c.call({"TTL", "short"}).number, -2);
  EXPECT_EQ(c.call({"EXPIRE", "plain", "100"}).number, 1);
  EXPECT_GT(c.call({"TTL", "plain"}).number, 98);
  EXPECT_EQ(c.call({"EXPIRE", "missing", "100"}).number, 0);
  EXPECT_EQ(c.call({"EXPIRE", "plain", "abc"}).text, "ERR value is not an integer or out of range");
  EXPECT_EQ(c.call({"SET", "plain", "w", "KEEPTTL"}).text, "OK");
  EXPECT_GT(c.call({"TTL", "plain"}).number, 98);
  EXPECT_EQ(c.call({"SET", "plain", "w"}).text, "OK");  // a SET without KEEPTTL clears it
  EXPECT_EQ(c.call({"TTL", "plain"}).number, -1);
  EXPECT_EQ(c.call({"EXPIRE", "plain", "0"}).number, 1);  // a past deadline deletes
  EXPECT_TRUE(c.call({"GET", "plain"}).is_null());
  // Expired keys leave DBSIZE even when nobody touches them (the background sweep, or the count itself).
  EXPECT_EQ(c.call({"FLUSHALL"}).text, "OK");
  for (int i = 0; i < 20; ++i) c.call({"SET", "gone" + std::to_string(i), "v", "PX", "30"});
  EXPECT_EQ(c.call({"SET", "stays", "v"}).text, "OK");
  std::this_thread::sleep_for(80ms);
  EXPECT_EQ(c.call({"DBSIZE"}).number, 1);
}

TEST_P(RespServer, CountersAndTheirErrors) {
  client c(server_.local_endpoint());
  EXPECT_EQ(c.call({"INCR", "n"}).number, 1);
  EXPECT_EQ(c.call({"INCRBY", "n", "41"}).number, 42);
  EXPECT_EQ(c.call({"DECR", "n"}).number, 41);
  EXPECT_EQ(c.call({"DECRBY", "n", "50"}).number, -9);
  EXPECT_EQ(c.call({"GET", "n"}).text, "-9");
  EXPECT_EQ(c.call({"SET", "s", "abc"}).text, "OK");
  EXPECT_EQ(c.call({"INCR", "s"}).text, "ERR value is not an integer or out of range");
  EXPECT_EQ(c.call({"INCRBY", "n", "x"}).text, "ERR value is not an integer or out of range");
  EXPECT_EQ(c.call({"SET", "big", "9223372036854775807"}).text, "OK");
  EXPECT_EQ(c.call({"INCR", "big"}).text, "ERR increment or decrement would overflow");
  EXPECT_EQ(c.call({"GET", "big"}).text, "9223372036854775807");
  EXPECT_EQ(c.call({"INCR", "n", "extra"}).text, "ERR wrong number of arguments for 'incr' command");
}

TEST_P(RespServer, MultiKeyCommandsAcrossShards) {
  client c(server_.local_endpoint());
  std::string mset = "*61\r\n$4\r\nMSET\r\n";  // the test limit is 64 arguments
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) {
    const std::string k = "key:" + std::to_string(i);
    const std::string v = "value-" + std::to_string(i);
    keys.push_back(k);
    mset += "$" + std::to_string(k.size()) + "\r\n" + k + "\r\n$" + std::to_string(v.size()) + "\r\n" + v + "\r\n";
  }
  c.send(mset);
  EXPECT_EQ(c.receive().text, "OK");
  EXPECT_EQ(c.call({"DBSIZE"}).number, 30);
  const auto got = c.call({"MGET", "key:7", "nope", "key:29", "key:0", "key:7"});
  ASSERT_EQ(got.items.size(), 5U);
  EXPECT_EQ(got.items[0].text, "value-7");
  EXPECT_TRUE(got.items[1].is_null());
  EXPECT_EQ(got.items[2].text, "value-29");
  EXPECT_EQ(got.items[3].text, "value-0");
  EXPECT_EQ(got.items[4].text, "value-7");
  // Single-key commands reach whichever shard owns the key.
  for (int i = 0; i < 30; i += 3) EXPECT_EQ(c.call({"GET", keys[i]}).text, "value-" + std::to_string(i));
  EXPECT_EQ(c.call({"EXISTS", "key:1", "key:2", "nope", "key:1"}).number, 3);
  EXPECT_EQ(c.call({"DEL", "key:1", "key:2", "nope", "key:1"}).number, 2);
  EXPECT_EQ(c.call({"DBSIZE"}).number, 28);
  EXPECT_EQ(c.call({"MSET", "a"}).text, "ERR wrong number of arguments for 'mset' command");
  EXPECT_EQ(c.call({"MSET", "a", "1", "b"}).text, "ERR wrong number of arguments for 'mset' command");
  EXPECT_EQ(c.call({"FLUSHALL"}).text, "OK");
  EXPECT_EQ(c.call({"DBSIZE"}).number, 0);
}

TEST_P(RespServer, PipelinedCommandsAreAnsweredInOrder) {
  client c(server_.local_endpoint());
  std::string batch;
  constexpr int n = 2000;
  for (int i = 0; i < n; ++i) {
    batch += command({"SET", "p" + std::to_string(i % 50), std::to_string(i)});
    batch += command({"GET", "p" + std::to_string(i % 50)});
    batch += command({"INCR", "counter"});
  }
  c.send(batch);
  const auto replies = c.receive(3 * n);
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(replies[3 * i].text, "OK") << i;
    ASSERT_EQ(replies[3 * i + 1].text, std::to_string(i)) << i;
    ASSERT_EQ(replies[3 * i + 2].number, i + 1) << i;
  }
  // A request split across many small writes.
  const std::string one = command({"SET", "split", std::string(300, 'x')});
  for (char ch : one) c.send(std::string(1, ch));
  EXPECT_EQ(c.receive().text, "OK");
  EXPECT_EQ(c.call({"GET", "split"}).text, std::string(300, 'x'));
}

// The keyspace grows its table a few nodes per operation (as Redis does) instead of rehashing every key at once:
// while keys move from the old table to the new, each is found, overwritten, counted, deleted and expired exactly
// once, wherever it is at the time. 60,000 keys cross a dozen growths; every reply is checked against a model.
TEST_P(RespServer, KeysStayWhereTheyAreFoundWhileTheTableGrows) {
  client c(server_.local_endpoint());
  constexpr int n = 60'000;
  constexpr int batch = 500;
  // Keys of 6 to 106 bytes, some sharing long prefixes, on both sides of std::string's inline capacity (15): the
  // table keeps a key's bytes in its node (hash_table_test.cpp makes keys collide, to test their comparison).
  const auto key = [](int i) {
    return "grow:" + std::string(static_cast<std::size_t>(i % 97), 'k') + std::to_string(i);
  };
  std::vector<std::optional<std::string>> model(n);
  for (int from = 0; from < n; from += batch) {
    std::string requests;
    std::vector<std::string> expected;  // each reply, written as the test reads it back
    for (int i = from; i < from + batch; ++i) {
      requests += command({"SET", key(i), "v" + std::to_string(i)});
      expected.emplace_back("OK");
      model[i] = "v" + std::to_string(i);
      const int older = i / 2;  // inserted long ago: most likely in the table being migrated out of
      requests += command({"GET", key(older)});
      expected.push_back(model[older].value_or("(nil)"));
      if (i % 7 == 0) {
        const int gone = i / 3;
        requests += command({"DEL", key(gone)});
        expected.push_back(model[gone] ? "1" : "0");
        model[gone].reset();
      }
      if (i % 11 == 0) {
        const int counted = i / 5;
        requests += command({"INCR", key(counted)});
        // A value "vN" is not a number; a deleted key counts from 0.
        expected.push_back(model[counted] ? "ERR value is not an integer or out of range" : "1");
        if (!model[counted]) model[counted] = "1";
      }
      if (i % 13 == 0) {
        const int expiring = i / 4;
        requests += command({"EXPIRE", key(expiring), "0"});  // a past deadline deletes at once
        expected.push_back(model[expiring] ? "1" : "0");
        model[expiring].reset();
      }
    }
    c.send(requests);
    const auto replies = c.receive(expected.size());
    for (std::size_t r = 0; r < expected.size(); ++r) {
      const auto& got = replies[r];
      const std::string seen = got.type == ':' ? std::to_string(got.number) : got.is_null() ? "(nil)" : got.text;
      ASSERT_EQ(seen, expected[r]) << "reply " << r << " of the batch from " << key(from);
    }
  }
  long long present = 0;
  for (const auto& v : model) present += v ? 1 : 0;
  EXPECT_EQ(c.call({"DBSIZE"}).number, present);
  for (int i = 0; i < n; i += 60) {  // the test's limit is 64 arguments
    std::vector<std::string> mget{"MGET"};
    for (int j = i; j < i + 60 && j < n; ++j) mget.push_back(key(j));
    const auto got = c.call(mget);
    ASSERT_EQ(got.items.size(), mget.size() - 1);
    for (std::size_t j = 0; j + 1 < mget.size(); ++j) {
      const auto& want = model[static_cast<std::size_t>(i) + j];
      ASSERT_EQ(got.items[j].is_null(), !want) << key(i + static_cast<int>(j));
      if (want) {
        ASSERT_EQ(got.items[j].text, *want) << key(i + static_cast<int>(j));
      }
    }
  }
}

TEST_P(RespServer, InlineCommandsAndEmptyRequestsAsRedisAcceptsThem) {
  client c(server_.local_endpoint());
  c.send("PING\r\n\r\n*0\r\nSET inline  value\r\nGET inline\n");
  const auto r = c.receive(3);
  EXPECT_EQ(r[0].text, "PONG");
  EXPECT_EQ(r[1].text, "OK");
  EXPECT_EQ(r[2].text, "value");
}

TEST_P(RespServer, ClientHelloConfigAndCommandAnswerWhatClientsAskAtStart) {
  client c(server_.local_endpoint());
  const auto hello = c.call({"HELLO", "2", "SETNAME", "tester"});
  ASSERT_EQ(hello.type, '*');
  EXPECT_EQ(hello.items.size(), 14U);
  EXPECT_EQ(hello.items[4].text, "proto");
  EXPECT_EQ(hello.items[5].number, 2);
  EXPECT_EQ(c.call({"CLIENT", "GETNAME"}).text, "tester");
  EXPECT_EQ(c.call({"CLIENT", "SETNAME", "other"}).text, "OK");
  EXPECT_EQ(c.call({"CLIENT", "GETNAME"}).text, "other");
  EXPECT_EQ(c.call({"CLIENT", "SETNAME", "has space"}).type, '-');
  EXPECT_EQ(c.call({"HELLO", "3"}).text, "NOPROTO sorry, this protocol version is not supported");
  EXPECT_EQ(c.call({"HELLO", "x"}).text, "ERR Protocol version is not an integer or out of range");
  const auto config = c.call({"CONFIG", "GET", "save"});
  ASSERT_EQ(config.items.size(), 2U);
  EXPECT_EQ(config.items[0].text, "save");
  EXPECT_EQ(c.call({"CONFIG", "GET", "appendonly"}).items[1].text, "no");
  EXPECT_EQ(c.call({"CONFIG", "GET", "maxmemory"}).items.size(), 0U);
  EXPECT_EQ(c.call({"CONFIG", "SET", "x", "y"}).type, '-');
  EXPECT_EQ(c.call({"COMMAND", "DOCS"}).type, '*');
  EXPECT_EQ(c.call({"COMMAND"}).type, '*');
}

TEST_P(RespServer, QuitAnswersThenCloses) {
  client c(server_.local_endpoint());
  c.send(command({"SET", "q", "1"}) + command({"QUIT"}) + command({"SET", "q", "2"}));
  const auto r = c.receive(2);
  EXPECT_EQ(r[0].text, "OK");
  EXPECT_EQ(r[1].text, "OK");
  EXPECT_TRUE(c.closed_by_server());
  client other(server_.local_endpoint());
  EXPECT_EQ(other.call({"GET", "q"}).text, "1");  // what came after QUIT was not run
}

// Each malformed request: the error Redis gives, the connection closed, and nothing else touched.
TEST_P(RespServer, MalformedInputGetsAProtocolErrorAndLosesNothingElse) {
  client keeper(server_.local_endpoint());
  EXPECT_EQ(keeper.call({"SET", "safe", "kept"}).text, "OK");
  const std::vector<std::pair<std::string, std::string>> cases{
      {"*1\r\n+GET\r\n", "ERR Protocol error: expected '$', got '+'"},
      {"*x\r\n", "ERR Protocol error: invalid multibulk length"},
      {"*65\r\n", "ERR Protocol error: invalid multibulk length"},  // above the test limit of 64
      {"*1\r\n$-5\r\n", "ERR Protocol error: invalid bulk length"},
      {"*1\r\n$1025\r\n", "ERR Protocol error: invalid bulk length"},  // above the test limit of 1024
      {"*1\r\n$3\r\nGETxx", "ERR Protocol error: expected CRLF after bulk string"},
      {std::string(300, 'a'), "ERR Protocol error: too big inline request"},
      {"*" + std::string(300, '1'), "ERR Protocol error: too big mbulk count string"},
  };
  for (const auto& [bad, expected] : cases) {
    client c(server_.local_endpoint());
    EXPECT_EQ(c.call({"SET", "before", "1"}).text, "OK");
    c.send(bad);
    const auto r = c.receive();
    EXPECT_EQ(r.type, '-') << bad.substr(0, 20);
    EXPECT_EQ(r.text, expected) << bad.substr(0, 20);
    EXPECT_TRUE(c.closed_by_server()) << bad.substr(0, 20);
  }
  EXPECT_EQ(keeper.call({"GET", "safe"}).text, "kept");
  EXPECT_EQ(keeper.call({"GET", "before"}).text, "1");
  EXPECT_TRUE(eventually([&] { return server_.clients() == 1; }));
}

TEST_P(RespServer, ABulkStringAtTheLimitIsAccepted) {
  client c(server_.local_endpoint());
  const std::string value(1024, 'v');
  EXPECT_EQ(c.call({"SET", "max", value}).text, "OK");
  EXPECT_EQ(c.call({"GET", "max"}).text, value);
}

TEST_P(RespServer, ClientsThatDisconnectMidRequestOrMidReplyFreeEverything) {
  {
    client c(server_.local_endpoint());
    c.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nonly part");  // mid-request
    c.drop();
  }
  {
    client c(server_.local_endpoint());
    // Replies this client never reads: a big pipeline of GETs of a 1 KiB value, then gone.
    EXPECT_EQ(c.call({"SET", "fat", std::string(1000, 'f')}).text, "OK");
    std::string batch;
    for (int i = 0; i < 5000; ++i) batch += command({"GET", "fat"});
    c.send(batch);
    c.drop();
  }
  EXPECT_TRUE(eventually([&] { return server_.clients() == 0; })) << server_.clients();
  client after(server_.local_endpoint());
  EXPECT_TRUE(after.call({"GET", "k"}).is_null());  // the partial SET never ran
  EXPECT_EQ(after.call({"GET", "fat"}).text.size(), 1000U);
}

TEST_P(RespServer, ManyConcurrentClients) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      client c(server_.local_endpoint());
      for (int i = 0; i < 200; ++i) {
        const std::string k = "c" + std::to_string(t) + ":" + std::to_string(i);
        if (c.call({"SET", k, std::to_string(i)}).text != "OK") return;
        if (c.call({"INCR", "shared"}).type != ':') return;
        if (c.call({"GET", k}).text != std::to_string(i)) return;
      }
      good.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 8);
  client c(server_.local_endpoint());
  EXPECT_EQ(c.call({"GET", "shared"}).text, "1600");
  EXPECT_EQ(c.call({"DBSIZE"}).number, 1601);
}

INSTANTIATE_TEST_SUITE_P(Shards, RespServer, testing::Values(std::size_t{1}, std::size_t{2}),
                         [](const auto& info) { return std::to_string(info.param) + "_shards"; });

TEST(RespServerLimits, PastMaxClientsANewConnectionIsRefusedCleanly) {
  resp_server::config cfg = test_config(1);
  cfg.max_clients = 2;
  resp_server::server s(cfg);
  client a(s.local_endpoint());
  client b(s.local_endpoint());
  EXPECT_EQ(a.call({"PING"}).text, "PONG");
  EXPECT_EQ(b.call({"PING"}).text, "PONG");
  {
    client refused(s.local_endpoint());
    const auto r = refused.receive();
    EXPECT_EQ(r.text, "ERR max number of clients reached");
    EXPECT_TRUE(refused.closed_by_server());
  }
  b.drop();
  EXPECT_TRUE(eventually([&] { return s.clients() == 1; }));
  client c(s.local_endpoint());
  EXPECT_EQ(c.call({"PING"}).text, "PONG");
  EXPECT_EQ(a.call({"PING"}).text, "PONG");
}

TEST(RespServerLimits, StopClosesEveryConnection) {
  auto s = std::make_unique<resp_server::server>(test_config(2));
  client a(s->local_endpoint());
  client b(s->local_endpoint());
  EXPECT_EQ(a.call({"SET", "x", "1"}).text, "OK");
  b.send("*2\r\n$3\r\nGET\r\n");  // mid-request when the server stops
  s->stop();
  EXPECT_TRUE(a.closed_by_server());
  EXPECT_TRUE(b.closed_by_server());
  s.reset();
}

// --- the program ---------------------------------------------------------------------------------------------

// Starts resp_server --port 0 with `args`; returns its pid and the endpoint it printed.
struct child {
  pid_t pid = -1;
  FILE* out = nullptr;
  std::string endpoint;
};

child start_program(const std::string& args) {
  int pipe_fds[2];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  EXPECT_EQ(::pipe(pipe_fds), 0);
  child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    const std::string command_line = std::string("exec ") + ANYDEFER_RESP_SERVER_BIN + " --port 0 " + args;
    ::execl("/bin/sh", "sh", "-c", command_line.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  c.out = ::fdopen(pipe_fds[0], "r");
  char line[256];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  if (std::fgets(line, sizeof line, c.out) != nullptr) {
    const std::string text(line);
    const auto on = text.find("listening on ");
    if (on != std::string::npos) c.endpoint = text.substr(on + 13, text.find(' ', on + 13) - on - 13);
  }
  return c;
}

int stop_program(child& c, int signal_number, std::string& said) {
  ::kill(c.pid, signal_number);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  char line[256];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  while (std::fgets(line, sizeof line, c.out) != nullptr) said += line;
  std::fclose(c.out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(RespServerProgram, SigtermAndSigintStopItGracefully) {
  for (const int sig : {SIGTERM, SIGINT}) {
    child c = start_program("--shards 2");
    ASSERT_FALSE(c.endpoint.empty());
    {
      client cl(anydefer::net::endpoint::parse(c.endpoint));
      EXPECT_EQ(cl.call({"SET", "a", "b"}).text, "OK");
      std::string said;
      EXPECT_EQ(stop_program(c, sig, said), 0);
      EXPECT_NE(said.find(sig == SIGINT ? "stopped by SIGINT" : "stopped by SIGTERM"), std::string::npos) << said;
      EXPECT_TRUE(cl.closed_by_server());
    }
  }
}

TEST(RespServerProgram, BadOptionsAndATakenPortExitWithAMessage) {
  const std::string bin = ANYDEFER_RESP_SERVER_BIN;
  EXPECT_EQ(WEXITSTATUS(std::system((bin + " --shards x 2>/dev/null").c_str())), 2);
  EXPECT_EQ(WEXITSTATUS(std::system((bin + " --frobnicate 2>/dev/null").c_str())), 2);
  for (const std::size_t shards : {1, 2}) {  // held by a server of one shard, then of two (SO_REUSEPORT)
    resp_server::server taken(test_config(shards));
    const std::string port = std::to_string(taken.local_endpoint().port());
    for (const char* ours : {"1", "2"}) {
      EXPECT_EQ(WEXITSTATUS(std::system((bin + " --shards " + ours + " --port " + port + " 2>/dev/null").c_str())), 2)
          << "held by " << shards << " shards, started with " << ours;
    }
  }
}

// redis-cli, a client nobody here wrote: every command through it.
TEST(RespServerProgram, RedisCliRunsEveryCommandWithoutWarnings) {
  if (std::system("command -v redis-cli >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "redis-cli not found (Debian's redis-tools; tools/setup installs it)";
  }
  resp_server::server s(test_config(2));
  // --no-raw: the formatted replies a terminal gets, with their types ("(integer) 1"), though not on a tty.
  const std::string cli = "redis-cli --no-raw -h 127.0.0.1 -p " + std::to_string(s.local_endpoint().port()) + " ";
  const auto run = [&](const std::string& args) {
    std::string out;
    FILE* p = ::popen((cli + args + " 2>&1").c_str(), "r");
    char buf[4096];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    EXPECT_EQ(::pclose(p), 0) << args;
    return out;
  };
  EXPECT_EQ(run("PING"), "PONG\n");
  EXPECT_EQ(run("SET k v EX 100"), "OK\n");
  EXPECT_EQ(run("GET k"), "\"v\"\n");
  EXPECT_EQ(run("TTL k"), "(integer) 100\n");
  EXPECT_EQ(run("MSET a 1 b 2 c 3"), "OK\n");
  EXPECT_EQ(run("MGET a b c nope"), "1) \"1\"\n2) \"2\"\n3) \"3\"\n4) (nil)\n");
  EXPECT_EQ(run("INCR a"), "(integer) 2\n");
  EXPECT_EQ(run("INCRBY a 10"), "(integer) 12\n");
  EXPECT_EQ(run("DECR a"), "(integer) 11\n");
  EXPECT_EQ(run("EXISTS a b nope"), "(integer) 2\n");
  EXPECT_EQ(run("DEL a b"), "(integer) 2\n");
  EXPECT_EQ(run("EXPIRE c 50"), "(integer) 1\n");
  EXPECT_EQ(run("DBSIZE"), "(integer) 2\n");
  EXPECT_EQ(run("ECHO hello"), "\"hello\"\n");
  EXPECT_EQ(run("FOO"), "(error) ERR unknown command 'FOO', with args beginning with: \n");
  EXPECT_EQ(run("FLUSHALL"), "OK\n");
  EXPECT_EQ(run("DBSIZE"), "(integer) 0\n");
  // Pipe mode: redis-cli --pipe sends raw RESP and checks every reply.
  std::string script;
  for (int i = 0; i < 1000; ++i) script += command({"SET", "pipe" + std::to_string(i), "v"});
  const std::string file = testing::TempDir() + "resp_pipe.txt";
  FILE* f = std::fopen(file.c_str(), "w");
  std::fwrite(script.data(), 1, script.size(), f);
  std::fclose(f);
  const std::string piped = run("--pipe < " + file);
  EXPECT_NE(piped.find("errors: 0, replies: 1000"), std::string::npos) << piped;
  EXPECT_EQ(run("DBSIZE"), "(integer) 1000\n");
}

}  // namespace
