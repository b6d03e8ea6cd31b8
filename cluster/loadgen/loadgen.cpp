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

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace py = pybind11;

namespace {

using Clock = std::chrono::steady_clock;

struct Lane {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call;
  grpc::ByteBuffer response;
  grpc::Status status;
  Clock::time_point started;
  size_t next_request = 0;
};

// Runs for duration_s; returns (latencies in seconds of the successful calls, failed calls).
std::tuple<std::vector<double>, long> Run(const std::string& endpoint, const std::string& method,
                                          const std::vector<std::string>& requests, int in_flight,
                                          double duration_s, double timeout_s) {
  if (requests.empty() || in_flight <= 0) throw std::invalid_argument("no requests or no lanes");
  std::vector<grpc::Slice> slices;
  slices.reserve(requests.size());
  for (auto& r : requests) slices.emplace_back(r.data(), r.size());
  std::vector<double> latencies;
  long errors = 0;
  {
    py::gil_scoped_release release;
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection, like a new client
    auto channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
    grpc::GenericStub stub(channel);
    grpc::CompletionQueue cq;
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(duration_s));
    std::vector<Lane> lanes(in_flight);
    auto start = [&](size_t i) {
      Lane& l = lanes[i];
      l.ctx = std::make_unique<grpc::ClientContext>();
      l.ctx->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
      grpc::ByteBuffer req(&slices[(i * 1009 + l.next_request++) % slices.size()], 1);
      l.started = Clock::now();
      l.call = stub.PrepareUnaryCall(l.ctx.get(), method, req, &cq);
      l.call->StartCall();
      l.call->Finish(&l.response, &l.status, reinterpret_cast<void*>(i));
    };
    for (int i = 0; i < in_flight; i++) start(i);
    int outstanding = in_flight;
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
      if (now < deadline) {
        start(i);
        outstanding++;
      }
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  return {latencies, errors};
}

}  // namespace

PYBIND11_MODULE(_loadgen, m) {
  // As in shim/front/front.cpp: no abseil deadlock detector on every gRPC lock (the same client
  // cost for both systems under test).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  m.doc() = "verikv bench's load generator (grpc++ generic stub); see cluster/bench.py";
  m.def("run", &Run, py::arg("endpoint"), py::arg("method"), py::arg("requests"), py::arg("in_flight"),
        py::arg("duration_s"), py::arg("timeout_s") = 10.0);
}
