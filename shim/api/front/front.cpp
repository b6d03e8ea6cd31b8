// verikv's client-facing gRPC front: a grpc++ async generic server whose completion-queue thread
// accepts calls and reads their request messages, and hands them to the node's event loop in
// batches. Python answers each call with its serialized response or a status.
//
// Why: Python's grpc.aio server costs hundreds of microseconds of CPU per call on a small
// machine, which caps throughput. Here the HTTP/2 and gRPC work stays in C++; the event loop
// wakes once per batch (an eventfd), not once per call.
//
// Threading: the completion-queue thread never touches Python objects. `take` and `finish` are
// called from the event loop with the GIL held; the state they share with the CQ thread is
// guarded by `mu_`. grpc++ allows starting an operation on a call from any thread, and each call
// has at most one operation outstanding (RequestCall, then Read, then Finish or WriteAndFinish).
//
// `finish` only queues the answer; the CQ thread starts the Finish/WriteAndFinish operations, all
// the answers queued since its last turn at once, woken by one grpc::Alarm per batch. Starting
// them from the event loop cost it ~25 us of CPU per call: each operation's completion woke the
// CQ thread blocked in the completion queue (an eventfd write and a context switch per call).
#include <absl/synchronization/mutex.h>
#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <pybind11/pybind11.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

namespace {

struct Call {
  enum State { REQUESTED, READING, FINISHING } state = REQUESTED;
  grpc::GenericServerContext ctx;
  grpc::GenericServerAsyncReaderWriter stream{&ctx};
  grpc::ByteBuffer buf;
};

struct Incoming {
  uint64_t id;
  std::string method;
  std::string body;
};

struct Outgoing {  // an answer `finish` queued for the CQ thread to send
  Call* call;
  int code;
  std::string message;
  std::string body;
};

constexpr int kOutstandingAccepts = 64;

class Front {
 public:
  Front(const std::string& addr, int max_receive_bytes) {
    grpc::ServerBuilder b;
    b.AddListeningPort(addr, grpc::InsecureServerCredentials(), &port_);
    b.RegisterAsyncGenericService(&service_);
    b.SetMaxReceiveMessageSize(max_receive_bytes);
    b.SetMaxSendMessageSize(INT_MAX);
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    cq_ = b.AddCompletionQueue();
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) {
      if (server_) server_->Shutdown();
      cq_->Shutdown();
      Drain();
      throw std::runtime_error("cannot listen for clients on " + addr);
    }
    efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd_ < 0) throw std::runtime_error("eventfd failed");
    for (int i = 0; i < kOutstandingAccepts; i++) RequestNew();
    thread_ = std::thread([this] { Loop(); });
  }

  ~Front() { Shutdown(0.0); }

  int fd() const { return efd_; }
  int port() const { return port_; }

  // Every call that arrived since the last take: (id, method, request bytes).
  py::list Take() {
    uint64_t v;
    while (read(efd_, &v, sizeof v) > 0) {
    }
    std::vector<Incoming> batch;
    {
      std::lock_guard<std::mutex> g(mu_);
      batch.swap(pending_);
      signaled_ = false;
    }
    py::list out;
    for (auto& in : batch) {
      out.append(py::make_tuple(in.id, py::str(in.method), py::bytes(in.body)));
    }
    return out;
  }

  // Answer call `id`: code 0 sends `response`; any other code ends the call with that status.
  // Returns false if the call is unknown (already answered, or the front is shutting down).
  // The answer is queued; the CQ thread sends it (see the top of this file).
  bool Finish(uint64_t id, int code, const std::string& message, py::bytes response) {
    char* data;
    Py_ssize_t len;
    PyBytes_AsStringAndSize(response.ptr(), &data, &len);
    std::lock_guard<std::mutex> g(mu_);
    if (closing_) return false;  // Shutdown answers what is still waiting
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return false;
    outgoing_.push_back(Outgoing{it->second, code, message, std::string(data, static_cast<size_t>(len))});
    waiting_.erase(it);
    if (!alarm_armed_) {
      // under mu_, so that Shutdown cannot shut the queue down between the check and the Set
      alarm_armed_ = true;
      alarm_.Set(cq_.get(), gpr_time_0(GPR_CLOCK_MONOTONIC), &alarm_tag_);
    }
    return true;
  }

  // Stop accepting; calls still unanswered end with UNAVAILABLE; in-flight ones get `grace`
  // seconds. Idempotent. Touches no Python object, so it runs without the GIL.
  void Shutdown(double grace_s) {
    if (stopped_) return;
    stopped_ = true;
    py::gil_scoped_release release;
    std::vector<uint64_t> ids;
    std::vector<Outgoing> out;
    {
      std::lock_guard<std::mutex> g(mu_);
      closing_ = true;
      for (auto& kv : waiting_) ids.push_back(kv.first);
      pending_.clear();
      out.swap(outgoing_);  // answered but not sent yet: send them now (an armed alarm finds none)
    }
    for (auto& o : out) Send(o);
    for (auto id : ids) FailCall(id, grpc::StatusCode::UNAVAILABLE, "verikv: the node is stopping");
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000)));
    cq_->Shutdown();
    if (thread_.joinable()) thread_.join();
    if (efd_ >= 0) close(efd_);
    efd_ = -1;
  }

 private:
  void Send(Outgoing& o) {
    Call* c = o.call;
    c->state = Call::FINISHING;
    if (o.code == 0) {
      grpc::Slice slice(o.body);
      grpc::ByteBuffer bb(&slice, 1);
      c->stream.WriteAndFinish(bb, grpc::WriteOptions(), grpc::Status::OK, c);
    } else {
      c->stream.Finish(grpc::Status(static_cast<grpc::StatusCode>(o.code), o.message), c);
    }
  }

  // A call still waiting for its answer ends with an error status (the front is stopping).
  void FailCall(uint64_t id, grpc::StatusCode code, const std::string& message) {
    Call* c;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = waiting_.find(id);
      if (it == waiting_.end()) return;
      c = it->second;
      waiting_.erase(it);
    }
    c->state = Call::FINISHING;
    c->stream.Finish(grpc::Status(code, message), c);
  }

  void RequestNew() {
    auto* c = new Call();
    service_.RequestCall(&c->ctx, &c->stream, cq_.get(), cq_.get(), c);
  }

  void Drain() {
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) delete static_cast<Call*>(tag);
  }

  void Loop() {
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) {
      if (tag == &alarm_tag_) {  // `finish` queued answers: send them all
        std::vector<Outgoing> out;
        {
          std::lock_guard<std::mutex> g(mu_);
          out.swap(outgoing_);
          alarm_armed_ = false;
        }
        for (auto& o : out) Send(o);
        continue;
      }
      auto* c = static_cast<Call*>(tag);
      switch (c->state) {
        case Call::REQUESTED:
          if (!ok) {  // shutting down
            delete c;
            break;
          }
          if (!stopped_) RequestNew();
          c->state = Call::READING;
          c->stream.Read(&c->buf, c);
          break;
        case Call::READING: {
          if (!ok) {  // the client sent no message, or went away
            c->state = Call::FINISHING;
            c->stream.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "verikv: a unary call needs exactly one request message"),
                             c);
            break;
          }
          std::vector<grpc::Slice> slices;
          std::string body;
          if (c->buf.Dump(&slices).ok()) {
            size_t n = 0;
            for (auto& s : slices) n += s.size();
            body.reserve(n);
            for (auto& s : slices) body.append(reinterpret_cast<const char*>(s.begin()), s.size());
          }
          c->buf.Clear();
          bool signal = false;
          {
            std::lock_guard<std::mutex> g(mu_);
            uint64_t id = next_id_++;
            waiting_[id] = c;
            pending_.push_back(Incoming{id, c->ctx.method(), std::move(body)});
            if (!signaled_) signaled_ = signal = true;
          }
          if (signal) {
            uint64_t one = 1;
            ssize_t r = write(efd_, &one, sizeof one);
            (void)r;  // the counter cannot overflow: take() resets it
          }
          break;
        }
        case Call::FINISHING:
          delete c;
          break;
      }
    }
  }

  grpc::AsyncGenericService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::unique_ptr<grpc::Server> server_;
  std::thread thread_;
  int port_ = 0;
  int efd_ = -1;
  std::atomic<bool> stopped_{false};
  std::mutex mu_;
  std::vector<Incoming> pending_;
  std::unordered_map<uint64_t, Call*> waiting_;
  std::vector<Outgoing> outgoing_;
  grpc::Alarm alarm_;  // wakes the CQ thread to send outgoing_ (set when it was not armed)
  char alarm_tag_ = 0;  // its tag: the address tells it apart from the calls
  bool alarm_armed_ = false;
  bool closing_ = false;
  uint64_t next_id_ = 1;
  bool signaled_ = false;
};

}  // namespace

PYBIND11_MODULE(_front, m) {
  // Debian's abseil keeps absl::Mutex's deadlock detector on (a debugging aid): every lock that
  // gRPC takes then updates a global lock-order graph, a few percent of the node's CPU per call.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  m.doc() = "verikv's client gRPC front (grpc++ async generic server); see shim/api/servicer.py";
  py::class_<Front>(m, "Front")
      .def(py::init<const std::string&, int>(), py::arg("listen"), py::arg("max_receive_bytes"))
      .def_property_readonly("fd", &Front::fd)
      .def_property_readonly("port", &Front::port)
      .def("take", &Front::Take)
      .def("finish", &Front::Finish, py::arg("call_id"), py::arg("code"), py::arg("message"),
           py::arg("response"))
      .def("shutdown", &Front::Shutdown, py::arg("grace_s") = 0.0);
}
