// b12_grpc: unary gRPC calls per second, and their latency, through anydefer::grpc against gRPC's own callback
// API, side by side in one run (B12). tools/bench runs it and writes bench/results/b12_grpc.json.
//
//   b12_grpc [--mode full|quick|smoke] [--out FILE]
//
// One process, two servers on 127.0.0.1 (ephemeral ports), both gRPC callback services for Echo.Say:
//   plain     the handler sets the reply and finishes its DefaultReactor (gRPC's cheapest unary handler);
//   anydefer  the handler returns a deferred through anydefer::grpc::serve().
// Two clients, each a closed loop of `concurrency` calls in flight on one channel per server; a call's completion
// records its latency and starts the next one:
//   plain     stub->async()->Say(context, request, reply, callback);
//   anydefer  anydefer::grpc::call(stub->async(), &Echo::Stub::async::Say, request).add_both(...), firing on the
//             gRPC thread as the plain callback does.
// Four pairs (client/server): plain/plain, anydefer/anydefer, and the two mixed ones, which show where a
// difference comes from. Each round runs every pair once, in a shuffled order, for `seconds`; the report keeps the
// median of the rounds for calls per second and for each percentile.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "anydefer/anydefer.hpp"
#include "anydefer/grpc/client.hpp"
#include "anydefer/grpc/server.hpp"
#include "echo.grpc.pb.h"

namespace {

using anydefer::test::Echo;
using anydefer::test::EchoReply;
using anydefer::test::EchoRequest;
using clock_type = std::chrono::steady_clock;

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

class plain_service final : public Echo::CallbackService {
  grpc::ServerUnaryReactor* Say(grpc::CallbackServerContext* context, const EchoRequest* request,
                                EchoReply* reply) override {
    reply->set_text(request->text());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

class anydefer_service final : public Echo::CallbackService {
  grpc::ServerUnaryReactor* Say(grpc::CallbackServerContext* context, const EchoRequest* request,
                                EchoReply* reply) override {
    return anydefer::grpc::serve(context, reply, [request] {
      EchoReply r;
      r.set_text(request->text());
      return anydefer::succeed(std::move(r));
    });
  }
};

struct server {
  explicit server(grpc::Service& service) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    instance = builder.BuildAndStart();
    if (!instance || port == 0) throw std::runtime_error("b12_grpc: cannot listen on 127.0.0.1");
  }
  ~server() { instance->Shutdown(std::chrono::system_clock::now()); }
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  int port = 0;
  std::unique_ptr<grpc::Server> instance;
};

// One measured run of a client against a server: `concurrency` chains of calls until the deadline.
class closed_loop {
 public:
  // Runs until `length` has passed, or, with `calls_per_chain`, until each chain made that many calls.
  closed_loop(Echo::Stub& stub, bool anydefer_client, int concurrency, clock_type::duration length,
              long calls_per_chain = 0)
      : stub_(stub),
        anydefer_client_(anydefer_client),
        calls_per_chain_(calls_per_chain),
        chains_(static_cast<std::size_t>(concurrency)) {
    request_.set_text("ping");
    for (auto& c : chains_) c.latencies_ns.reserve(1 << 16);
    const double cpu_start = process_cpu_seconds();
    start_ = clock_type::now();
    deadline_ = start_ + length;
    active_ = concurrency;
    for (auto& c : chains_) next(c);
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return active_ == 0; });
    end_ = clock_type::now();
    cpu_seconds_ = process_cpu_seconds() - cpu_start;
  }

  std::size_t calls() const {
    std::size_t n = 0;
    for (const auto& c : chains_) n += c.latencies_ns.size();
    return n;
  }
  double calls_per_second() const {
    return static_cast<double>(calls()) / std::chrono::duration<double>(end_ - start_).count();
  }
  // CPU time of the whole process (client and server, every thread) per call: the work a call costs, which the
  // machine's other load disturbs less than the throughput.
  double cpu_us_per_call() const { return calls() == 0 ? 0 : cpu_seconds_ * 1e6 / static_cast<double>(calls()); }
  std::vector<double> latencies_ns() const {
    std::vector<double> all;
    for (const auto& c : chains_) all.insert(all.end(), c.latencies_ns.begin(), c.latencies_ns.end());
    return all;
  }
  long errors() const { return errors_.load(); }

 private:
  // A chain's calls run one after another, so its vector needs no lock: each call's completion happens before the
  // next call starts.
  struct chain {
    std::vector<double> latencies_ns;
    long started = 1;  // calls this chain started (the first one by the constructor)
  };
  struct plain_call {
    grpc::ClientContext context;
    EchoRequest request;
    EchoReply reply;
    clock_type::time_point started;
  };

  void next(chain& c) {
    if (anydefer_client_) {
      const auto started = clock_type::now();
      anydefer::grpc::call(stub_.async(), &Echo::Stub::async::Say, request_)
          .add_both([this, &c, started](const anydefer::result<EchoReply>& r) { finished(c, started, r.has_value()); });
    } else {
      auto* call = new plain_call;
      call->request = request_;
      call->started = clock_type::now();
      stub_.async()->Say(&call->context, &call->request, &call->reply, [this, &c, call](const grpc::Status& s) {
        const auto started = call->started;
        delete call;
        finished(c, started, s.ok());
      });
    }
  }

  void finished(chain& c, clock_type::time_point started, bool ok) {
    const auto now = clock_type::now();
    if (ok) {
      c.latencies_ns.push_back(std::chrono::duration<double, std::nano>(now - started).count());
    } else {
      errors_.fetch_add(1);
    }
    const bool more = calls_per_chain_ > 0 ? c.started++ < calls_per_chain_ : now < deadline_;
    if (more) {
      next(c);
      return;
    }
    std::lock_guard lock(mu_);
    if (--active_ == 0) done_.notify_all();
  }

  Echo::Stub& stub_;
  const bool anydefer_client_;
  const long calls_per_chain_;
  EchoRequest request_;
  std::vector<chain> chains_;
  clock_type::time_point start_, deadline_, end_;
  double cpu_seconds_ = 0;
  std::mutex mu_;
  std::condition_variable done_;
  int active_ = 0;
  std::atomic<long> errors_{0};
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

struct pair_result {
  std::string client, server;
  std::vector<double> rps, p50_us, p99_us, cpu_us;
  long errors = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "full";
  std::string out_path;
  long fixed_calls = 0;  // --calls: that many calls of one pair, for instruction counts under callgrind
  std::string fixed_pair;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (a == "--out" && i + 1 < argc) {
      out_path = argv[++i];
    } else if (a == "--calls" && i + 1 < argc) {
      fixed_calls = std::atol(argv[++i]);
    } else if (a == "--pair" && i + 1 < argc) {
      fixed_pair = argv[++i];
    } else {
      std::cerr << "usage: b12_grpc [--mode full|quick|smoke] [--out FILE]\n"
                   "       b12_grpc --calls N --pair plain/plain|anydefer/anydefer|anydefer/plain|plain/anydefer\n";
      return 2;
    }
  }
  int rounds = 15;
  double seconds = 1.0;
  if (mode == "quick") {
    rounds = 3;
    seconds = 1.0;
  } else if (mode == "smoke") {
    rounds = 1;
    seconds = 0.2;
  } else if (mode != "full") {
    std::cerr << "b12_grpc: unknown mode '" << mode << "' (full, quick or smoke)\n";
    return 2;
  }
  constexpr int concurrency = 32;

  try {
    plain_service plain;
    anydefer_service ours;
    server plain_server(plain);
    server anydefer_server(ours);
    auto connect = [](int port) {
      auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
      if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
        throw std::runtime_error("b12_grpc: cannot connect to port " + std::to_string(port));
      }
      return Echo::NewStub(channel);
    };
    auto to_plain = connect(plain_server.port);
    auto to_anydefer = connect(anydefer_server.port);

    if (fixed_calls > 0) {
      const auto slash = fixed_pair.find('/');
      const std::string client = fixed_pair.substr(0, slash);
      const std::string server = slash == std::string::npos ? "" : fixed_pair.substr(slash + 1);
      const auto known = [](const std::string& side) { return side == "plain" || side == "anydefer"; };
      if (!known(client) || !known(server) || fixed_calls % concurrency != 0) {
        std::cerr << "b12_grpc: --pair CLIENT/SERVER (plain or anydefer each) and --calls a multiple of " << concurrency
                  << '\n';
        return 2;
      }
      closed_loop run(server == "plain" ? *to_plain : *to_anydefer, client == "anydefer", concurrency,
                      clock_type::duration::max(), fixed_calls / concurrency);
      if (run.errors() != 0 || static_cast<long>(run.calls()) != fixed_calls) {
        std::cerr << "b12_grpc: " << run.errors() << " of " << fixed_calls << " calls failed\n";
        return 1;
      }
      std::cout << "calls " << fixed_calls << '\n';
      return 0;
    }

    std::vector<pair_result> pairs = {
        {"plain", "plain", {}, {}, {}, {}, 0},
        {"anydefer", "anydefer", {}, {}, {}, {}, 0},
        {"anydefer", "plain", {}, {}, {}, {}, 0},
        {"plain", "anydefer", {}, {}, {}, {}, 0},
    };
    const auto length = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
    // Warm-up: connections, gRPC's thread pools and allocators.
    for (auto& p : pairs) {
      closed_loop(p.server == "plain" ? *to_plain : *to_anydefer, p.client == "anydefer", concurrency,
                  std::min<clock_type::duration>(length, std::chrono::milliseconds(300)));
    }
    std::mt19937 shuffle(static_cast<unsigned>(std::time(nullptr)));
    std::vector<std::size_t> order = {0, 1, 2, 3};
    for (int round = 0; round < rounds; ++round) {
      std::shuffle(order.begin(), order.end(), shuffle);
      for (const std::size_t i : order) {
        auto& p = pairs[i];
        closed_loop run(p.server == "plain" ? *to_plain : *to_anydefer, p.client == "anydefer", concurrency, length);
        const std::vector<double> lat = run.latencies_ns();
        p.rps.push_back(run.calls_per_second());
        p.p50_us.push_back(percentile(lat, 0.50) / 1000.0);
        p.p99_us.push_back(percentile(lat, 0.99) / 1000.0);
        p.cpu_us.push_back(run.cpu_us_per_call());
        p.errors += run.errors();
        std::fprintf(stderr,
                     "b12_grpc: round %d, client %-8s server %-8s %9.0f calls/s  p50 %6.1f us  p99 %6.1f us  "
                     "cpu %5.1f us/call\n",
                     round + 1, p.client.c_str(), p.server.c_str(), p.rps.back(), p.p50_us.back(), p.p99_us.back(),
                     p.cpu_us.back());
      }
    }

    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    std::string json = "{\n  \"bench\": \"B12\",\n  \"mode\": \"" + mode + "\",\n  \"date\": \"" + date +
                       "\",\n  \"grpc_version\": \"" + grpc::Version() +
                       "\",\n  \"concurrency\": " + std::to_string(concurrency) +
                       ",\n  \"seconds\": " + std::to_string(seconds) + ",\n  \"rounds\": " + std::to_string(rounds) +
                       ",\n  \"results\": [\n";
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const auto& p = pairs[i];
      json += "    {\"client\": \"" + p.client + "\", \"server\": \"" + p.server +
              "\", \"calls_per_s\": " + std::to_string(median(p.rps)) +
              ", \"p50_us\": " + std::to_string(median(p.p50_us)) +
              ", \"p99_us\": " + std::to_string(median(p.p99_us)) +
              ", \"cpu_us_per_call\": " + std::to_string(median(p.cpu_us)) +
              ", \"errors\": " + std::to_string(p.errors) + "}" + (i + 1 < pairs.size() ? ",\n" : "\n");
    }
    json += "  ]\n}\n";
    bool failed_calls = false;
    for (const auto& p : pairs) failed_calls = failed_calls || p.errors != 0;
    if (failed_calls) {
      std::cerr << "b12_grpc: some calls failed; no results written\n" << json;
      return 1;
    }
    if (out_path.empty()) {
      std::cout << json;
    } else {
      std::ofstream(out_path) << json;
    }
  } catch (const std::exception& e) {
    std::cerr << "b12_grpc: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
