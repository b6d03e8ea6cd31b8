// The load generator behind `verikv bench`: unary gRPC calls with a fixed number in flight, from
// C++ (grpc++ generic stub), so that the client's own cost stays small next to the servers' on a
// small machine. The same code drives verikv and etcd; it knows nothing of either beyond the
// method name and the pre-serialized request messages Python hands it.
#include <absl/synchronization/mutex.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <unordered_map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace py = pybind11;

namespace {

// The credentials of every channel: plain text, or TLS once set_tls() gave a CA (and a client
// certificate and key, for servers that require one). Set before the loads start.
grpc::SslCredentialsOptions tls_options;
bool tls_on = false;

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() {
  return tls_on ? grpc::SslCredentials(tls_options) : grpc::InsecureChannelCredentials();
}

void SetTls(const std::string& ca_pem, const std::string& cert_pem, const std::string& key_pem) {
  tls_options.pem_root_certs = ca_pem;
  tls_options.pem_cert_chain = cert_pem;
  tls_options.pem_private_key = key_pem;
  tls_on = !ca_pem.empty();
}

using Clock = std::chrono::steady_clock;

struct Lane {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call;
  grpc::ByteBuffer response;
  grpc::Status status;
  Clock::time_point started;
  size_t next_request = 0;
};

// Runs for duration_s (with `once`: until each request was sent once, or duration_s); returns
// (latencies in seconds of the successful calls, failed calls). Each request goes to `method`,
// or with `methods` (one per request) to its own.
std::tuple<std::vector<double>, long> Run(const std::string& endpoint, const std::string& method,
                                          const std::vector<std::string>& requests, int in_flight,
                                          double duration_s, double timeout_s, bool once,
                                          const std::vector<std::string>& methods) {
  if (requests.empty() || in_flight <= 0) throw std::invalid_argument("no requests or no lanes");
  if (!methods.empty() && methods.size() != requests.size())
    throw std::invalid_argument("methods: one per request");
  std::vector<grpc::Slice> slices;
  slices.reserve(requests.size());
  for (auto& r : requests) slices.emplace_back(r.data(), r.size());
  std::vector<double> latencies;
  long errors = 0;
  {
    py::gil_scoped_release release;
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection, like a new client
    auto channel = grpc::CreateCustomChannel(endpoint, ChannelCredentials(), args);
    grpc::GenericStub stub(channel);
    grpc::CompletionQueue cq;
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(duration_s));
    std::vector<Lane> lanes(in_flight);
    size_t issued = 0;  // with `once`: each request is sent once, in order, then no more
    auto start = [&](size_t i) {
      Lane& l = lanes[i];
      if (once && issued == slices.size()) return false;
      l.ctx = std::make_unique<grpc::ClientContext>();
      l.ctx->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
      size_t k = once ? issued++ : (i * 1009 + l.next_request++) % slices.size();
      grpc::ByteBuffer req(&slices[k], 1);
      l.started = Clock::now();
      l.call = stub.PrepareUnaryCall(l.ctx.get(), methods.empty() ? method : methods[k], req, &cq);
      l.call->StartCall();
      l.call->Finish(&l.response, &l.status, reinterpret_cast<void*>(i));
      return true;
    };
    int outstanding = 0;
    for (int i = 0; i < in_flight; i++) outstanding += start(i);
    void* tag;
    bool ok;
    while (outstanding > 0 && cq.Next(&tag, &ok)) {
      size_t i = reinterpret_cast<size_t>(tag);
      Lane& l = lanes[i];
      auto now = Clock::now();
      if (ok && l.status.ok()) {
        latencies.push_back(std::chrono::duration<double>(now - l.started).count());
      } else {
        errors++;
      }
      outstanding--;
      if (now < deadline && start(i)) outstanding++;
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  return {latencies, errors};
}

// ---- watch: event delivery latency ----

// The few protobuf fields the watch load reads, from the wire format (no generated code: the
// load generator knows the messages only as bytes). A field of a message: calls f(field, wire
// type, varint value, bytes) for each; false on malformed input.
template <typename F>
bool Fields(const char* p, const char* end, F f) {
  auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
      uint8_t b = static_cast<uint8_t>(*p++);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (p < end) {
    uint64_t tag, v = 0;
    if (!varint(tag)) return false;
    int field = static_cast<int>(tag >> 3), type = static_cast<int>(tag & 7);
    const char* data = nullptr;
    if (type == 0) {
      if (!varint(v)) return false;
    } else if (type == 2) {
      if (!varint(v) || v > static_cast<uint64_t>(end - p)) return false;
      data = p;
      p += v;
    } else if (type == 1) {
      if (end - p < 8) return false;
      p += 8;
    } else if (type == 5) {
      if (end - p < 4) return false;
      p += 4;
    } else {
      return false;
    }
    f(field, type, v, data);
  }
  return true;
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// ResponseHeader.revision (field 3) of a response's header (field 1).
int64_t HeaderRevision(const std::string& msg) {
  int64_t revision = -1;
  Fields(msg.data(), msg.data() + msg.size(), [&](int field, int type, uint64_t v, const char* data) {
    if (field == 1 && type == 2)
      Fields(data, data + v, [&](int f, int t, uint64_t x, const char*) {
        if (f == 3 && t == 0) revision = static_cast<int64_t>(x);
      });
  });
  return revision;
}

struct Delivery {
  int64_t revision;
  Clock::time_point at;
};

struct WatchStream {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call;
  grpc::ByteBuffer in;
  grpc::Status status;
  int to_create = 0;  // create requests not yet written
  bool finishing = false;
};

// `watchers` watchers, `per_stream` to a Watch stream, the streams spread over the endpoints
// (every 100 streams to an endpoint on a connection of their own), all created from
// `create_request`. Once every watcher is created, puts (one at a time, at most `put_rate` a
// second, cycling through `put_requests`, all inside the watched range) go to `put_endpoint`
// for duration_s; then up to drain_s for the last events to arrive. Returns (for each event of
// an acknowledged put delivered to a watcher: its delivery time minus the put's
// acknowledgement time, in seconds, negative if it came first; events delivered; puts
// acknowledged; seconds from the first put to the last delivery; errors).
std::tuple<std::vector<double>, long, long, double, long> Watch(
    const std::vector<std::string>& endpoints, const std::string& create_request, int watchers,
    int per_stream, const std::string& put_endpoint, const std::vector<std::string>& put_requests,
    double put_rate, double duration_s, double drain_s) {
  if (endpoints.empty() || watchers <= 0 || per_stream <= 0 || put_requests.empty() || put_rate <= 0)
    throw std::invalid_argument("no endpoints, watchers, puts or rate");
  std::vector<double> latencies;
  long acked = 0;
  double span_s = 0;
  std::atomic<long> errors{0}, delivered{0}, created{0};
  {
    py::gil_scoped_release release;
    const int n_streams = (watchers + per_stream - 1) / per_stream;
    std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
    std::vector<WatchStream> streams(n_streams);
    grpc::CompletionQueue cq;
    // a stream's tags: its index * 4 + what completed (0 started, 1 written, 2 read, 3 finished)
    auto tag = [](size_t i, int what) { return reinterpret_cast<void*>(static_cast<intptr_t>(i * 4 + what)); };
    for (int i = 0; i < n_streams; i++) {
      size_t connection = static_cast<size_t>(i / 100) * endpoints.size() + i % endpoints.size();
      while (stubs.size() <= connection) {
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
        args.SetMaxReceiveMessageSize(-1);
        stubs.push_back(std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(
            endpoints[stubs.size() % endpoints.size()], ChannelCredentials(), args)));
      }
      WatchStream& s = streams[i];
      s.ctx = std::make_unique<grpc::ClientContext>();
      s.to_create = std::min(per_stream, watchers - i * per_stream);
      s.call = stubs[connection]->PrepareCall(s.ctx.get(), "/etcdserverpb.Watch/Watch", &cq);
      s.call->StartCall(tag(i, 0));
    }
    grpc::Slice create_slice(create_request.data(), create_request.size());
    std::vector<Delivery> deliveries;  // the reader's until it is joined
    std::atomic<bool> stopping{false};

    std::thread reader([&] {
      void* t;
      bool ok;
      int open = n_streams;
      while (open > 0 && cq.Next(&t, &ok)) {
        size_t i = static_cast<size_t>(reinterpret_cast<intptr_t>(t)) / 4;
        int what = static_cast<int>(reinterpret_cast<intptr_t>(t) % 4);
        WatchStream& s = streams[i];
        if (what == 3) {
          open--;
          continue;
        }
        if (!ok) {  // the stream is over (the server ended it, or we cancelled it)
          if (!stopping) errors++;
          if (!s.finishing) {
            s.finishing = true;
            s.call->Finish(&s.status, tag(i, 3));
          }
          continue;
        }
        if (what != 2) {  // started, or a create written: the next create, then read
          if (s.to_create > 0) {
            s.to_create--;
            grpc::ByteBuffer req(&create_slice, 1);
            s.call->Write(req, tag(i, 1));
          } else {
            s.call->Read(&s.in, tag(i, 2));
          }
          continue;
        }
        auto now = Clock::now();
        std::string msg = Flatten(s.in);
        long events = 0;
        bool is_created = false;
        Fields(msg.data(), msg.data() + msg.size(), [&](int field, int type, uint64_t v, const char* data) {
          if (field == 3 && type == 0 && v) is_created = true;  // WatchResponse.created
          if (field == 11 && type == 2)  // WatchResponse.events: Event.kv (2): KeyValue.mod_revision (3)
            Fields(data, data + v, [&](int f, int ty, uint64_t x, const char* d) {
              if (f == 2 && ty == 2)
                Fields(d, d + x, [&](int kf, int kt, uint64_t kx, const char*) {
                  if (kf == 3 && kt == 0) {
                    deliveries.push_back({static_cast<int64_t>(kx), now});
                    events++;
                  }
                });
            });
        });
        if (is_created) created++;
        if (events) delivered += events;
        s.call->Read(&s.in, tag(i, 2));
      }
    });

    auto stop_streams = [&] {
      stopping = true;
      for (auto& s : streams) s.ctx->TryCancel();
      reader.join();
      cq.Shutdown();
      void* t;
      bool ok;
      while (cq.Next(&t, &ok)) {
      }
    };
    auto wait_until = [](auto cond, double seconds) {
      auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
      while (!cond() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      return cond();
    };
    if (!wait_until([&] { return created.load() >= watchers; }, 30.0)) {
      stop_streams();
      py::gil_scoped_acquire acquire;
      throw std::runtime_error("the watchers were not all created within 30 s (" +
                               std::to_string(created.load()) + " of " + std::to_string(watchers) + ")");
    }

    // the puts: one at a time, paced
    std::unordered_map<int64_t, Clock::time_point> acks;
    {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      grpc::GenericStub stub(grpc::CreateCustomChannel(put_endpoint, ChannelCredentials(), args));
      grpc::CompletionQueue put_cq;
      std::vector<grpc::Slice> slices;
      for (auto& r : put_requests) slices.emplace_back(r.data(), r.size());
      auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / put_rate));
      auto started = Clock::now();
      auto deadline = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration_s));
      for (size_t k = 0; Clock::now() < deadline; k++) {
        std::this_thread::sleep_until(started + interval * static_cast<long>(k));
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        grpc::ByteBuffer req(&slices[k % slices.size()], 1), resp;
        grpc::Status status;
        auto call = stub.PrepareUnaryCall(&ctx, "/etcdserverpb.KV/Put", req, &put_cq);
        call->StartCall();
        call->Finish(&resp, &status, nullptr);
        void* t;
        bool ok;
        put_cq.Next(&t, &ok);
        auto now = Clock::now();
        int64_t revision = ok && status.ok() ? HeaderRevision(Flatten(resp)) : -1;
        if (revision > 0) {
          acks[revision] = now;
          acked++;
        } else {
          errors++;
        }
      }
      put_cq.Shutdown();
      void* t;
      bool ok;
      while (put_cq.Next(&t, &ok)) {
      }
      wait_until([&] { return delivered.load() >= acked * watchers; }, drain_s);
      stop_streams();
      Clock::time_point last = started;
      for (auto& d : deliveries) {
        auto a = acks.find(d.revision);
        if (a == acks.end()) continue;
        latencies.push_back(std::chrono::duration<double>(d.at - a->second).count());
        last = std::max(last, d.at);
      }
      span_s = std::chrono::duration<double>(last - started).count();
    }
  }
  return {latencies, static_cast<long>(delivered.load()), acked, span_s, static_cast<long>(errors.load())};
}

// ---- streams of requests: LeaseKeepAlive ----

struct Pipe {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call;
  grpc::ByteBuffer in;
  grpc::Status status;
  std::deque<Clock::time_point> sent;  // the requests not answered yet, oldest first
  size_t next = 0;  // the next request to send, cycling
  bool writing = false, over = false, finishing = false;
};

// `streams` bidirectional streams of `method` (spread over the endpoints, each on a connection of
// its own), each keeping up to `window` requests unanswered (cycling through `requests`, each
// stream from its own offset) for duration_s. Each answer is taken to answer the oldest request
// unanswered on its stream (as a keep-alive stream's answers come in order). Returns (latencies
// of the answered requests in seconds, streams that failed).
std::tuple<std::vector<double>, long> Pipeline(const std::vector<std::string>& endpoints,
                                               const std::string& method,
                                               const std::vector<std::string>& requests, int streams,
                                               int window, double duration_s) {
  if (endpoints.empty() || requests.empty() || streams <= 0 || window <= 0)
    throw std::invalid_argument("no endpoints, requests, streams or window");
  std::vector<double> latencies;
  long failed = 0;
  {
    py::gil_scoped_release release;
    std::vector<grpc::Slice> slices;
    for (auto& r : requests) slices.emplace_back(r.data(), r.size());
    std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
    std::vector<Pipe> pipes(streams);
    grpc::CompletionQueue cq;
    auto tag = [](size_t i, int what) { return reinterpret_cast<void*>(static_cast<intptr_t>(i * 4 + what)); };
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration_s));
    auto write = [&](size_t i) {
      Pipe& p = pipes[i];
      if (p.writing || p.over || p.sent.size() >= static_cast<size_t>(window) || Clock::now() >= deadline) return;
      grpc::ByteBuffer req(&slices[(i * 7919 + p.next++) % slices.size()], 1);
      p.writing = true;
      p.sent.push_back(Clock::now());
      p.call->Write(req, tag(i, 1));
    };
    for (int i = 0; i < streams; i++) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      stubs.push_back(std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(
          endpoints[i % endpoints.size()], ChannelCredentials(), args)));
      Pipe& p = pipes[i];
      p.ctx = std::make_unique<grpc::ClientContext>();
      p.call = stubs.back()->PrepareCall(p.ctx.get(), method, &cq);
      p.call->StartCall(tag(i, 0));
    }
    int open = streams;
    bool cancelled = false;
    void* t;
    bool ok;
    while (open > 0) {
      auto status = cq.AsyncNext(&t, &ok, std::chrono::system_clock::now() + std::chrono::milliseconds(50));
      if (status == grpc::CompletionQueue::SHUTDOWN) break;
      bool idle = true;
      for (auto& p : pipes) idle = idle && p.sent.empty();
      if (!cancelled && Clock::now() >= deadline && idle) {  // every request answered: done
        cancelled = true;
        for (auto& p : pipes) p.ctx->TryCancel();
      } else if (!cancelled && Clock::now() >= deadline + std::chrono::seconds(10)) {
        cancelled = true;  // answers that did not come in 10 s count as failures
        for (auto& p : pipes) p.ctx->TryCancel();
      }
      if (status == grpc::CompletionQueue::TIMEOUT) continue;
      size_t i = static_cast<size_t>(reinterpret_cast<intptr_t>(t)) / 4;
      int what = static_cast<int>(reinterpret_cast<intptr_t>(t) % 4);
      Pipe& p = pipes[i];
      if (what == 3) {
        open--;
        continue;
      }
      if (!ok) {
        if (!cancelled) failed++;
        p.over = true;
        if (!p.finishing) {
          p.finishing = true;
          p.call->Finish(&p.status, tag(i, 3));
        }
        continue;
      }
      if (what == 0) {  // started: read, and write
        p.call->Read(&p.in, tag(i, 2));
        write(i);
      } else if (what == 1) {
        p.writing = false;
        write(i);
      } else {  // an answer
        if (!p.sent.empty()) {
          latencies.push_back(std::chrono::duration<double>(Clock::now() - p.sent.front()).count());
          p.sent.pop_front();
        }
        p.call->Read(&p.in, tag(i, 2));
        write(i);
      }
    }
    cq.Shutdown();
    while (cq.Next(&t, &ok)) {
    }
  }
  return {latencies, failed};
}

}  // namespace

PYBIND11_MODULE(_loadgen, m) {
  // As in shim/front/front.cpp: no abseil deadlock detector on every gRPC lock (the same client
  // cost for both systems under test).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  m.doc() = "verikv bench's load generator (grpc++ generic stub); see cluster/bench.py";
  m.def("set_tls", &SetTls, py::arg("ca_pem"), py::arg("cert_pem") = "", py::arg("key_pem") = "",
        "use TLS (verifying servers with ca_pem, showing cert_pem/key_pem) on every later channel; "
        "an empty ca_pem: plain text again");
  m.def("watch", &Watch, py::arg("endpoints"), py::arg("create_request"), py::arg("watchers"),
        py::arg("per_stream"), py::arg("put_endpoint"), py::arg("put_requests"), py::arg("put_rate"),
        py::arg("duration_s"), py::arg("drain_s") = 10.0);
  m.def("pipeline", &Pipeline, py::arg("endpoints"), py::arg("method"), py::arg("requests"), py::arg("streams"),
        py::arg("window"), py::arg("duration_s"));
  m.def("run", &Run, py::arg("endpoint"), py::arg("method"), py::arg("requests"), py::arg("in_flight"),
        py::arg("duration_s"), py::arg("timeout_s") = 10.0, py::arg("once") = false,
        py::arg("methods") = std::vector<std::string>());
}
