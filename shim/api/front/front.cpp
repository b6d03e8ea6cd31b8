// verikv's client-facing gRPC front: a grpc++ async generic server whose completion-queue thread
// accepts calls and reads their request messages, and hands them to the node's event loop in
// batches. Python answers each call with its serialized response or a status.
//
// Streaming calls (the methods named at construction, e.g. Watch): every message the client
// sends reaches Python like a unary request (kind MESSAGE); Python `send`s any number of
// messages on the stream, in order, and `finish`es it with a status once. A client that ends its
// side of the stream (half-close) still gets what Python sends, as etcd does; a client that
// cancels the call, or goes away, is reported as kind END, after which Python must finish it;
// a half-close, as kind HALF_CLOSED (Watch goes on sending, LeaseKeepAlive ends once answered).
// A new stream is reported as kind OPEN, with the client's "hasleader" metadata as its bytes
// (etcd's WithRequireLeader: "true" asks that the stream end when the node has no leader).
// A unary call's request and a new stream also carry the client's "token" metadata (etcd's auth
// token, from Authenticate), or None when it sent none; and, when clients must present a
// certificate (client_cert_auth), the common name of the client's verified certificate for a call
// without a token (etcd takes it as the call's user), else None.
//
// Why: Python's grpc.aio server costs hundreds of microseconds of CPU per call on a small
// machine, which caps throughput. Here the HTTP/2 and gRPC work stays in C++; the event loop
// wakes once per batch (an eventfd), not once per call.
//
// Threading: the completion-queue thread never touches Python objects. `take`, `finish` and
// `send` are called from the event loop with the GIL held; the state they share with the CQ
// thread is guarded by `mu_`. grpc++ allows starting an operation on a call from any thread. A
// unary call has at most one operation outstanding (RequestCall, then Read, then Finish or
// WriteAndFinish); a stream at most one Read and one Write or Finish.
//
// `finish` only queues the answer; the CQ thread starts the Finish/WriteAndFinish operations, all
// the answers queued since its last turn at once, woken by one grpc::Alarm per batch. Starting
// them from the event loop cost it ~25 us of CPU per call: each operation's completion woke the
// CQ thread blocked in the completion queue (an eventfd write and a context switch per call).
#include <absl/synchronization/mutex.h>
#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/byte_buffer.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "connection_limit.h"

namespace py = pybind11;

namespace {

struct Call;

// A completion-queue tag: which operation of which call completed.
struct Op {
  enum Kind { ACCEPT, READ, WRITE, FINISH, DONE } kind;
  Call* call;
};

struct Call {
  enum State { REQUESTED, READING, FINISHING, FINISHED } state = REQUESTED;  // unary calls
  grpc::GenericServerContext ctx;
  grpc::GenericServerAsyncReaderWriter stream{&ctx};
  grpc::ByteBuffer buf;
  // streams only (guarded by the front's mu_)
  bool streaming = false;
  uint64_t id = 0;
  Op accept_op{Op::ACCEPT, this};  // a unary call's every operation, and a stream's RequestCall
  Op read_op{Op::READ, this}, write_op{Op::WRITE, this}, finish_op{Op::FINISH, this};
  Op done_op{Op::DONE, this};  // the call is over (answered, or cancelled by the client)
  bool done = false;  // done_op completed: a call is deleted only after it
  grpc::ByteBuffer out;
  std::deque<std::string> writes;  // sent by Python, not yet written
  size_t queued_bytes = 0;  // their size, and the size of the write in flight
  size_t in_flight_bytes = 0;
  bool reading = false, writing = false;
  bool wrote = false;  // a message went out: the initial metadata with it (never buffered, see Pump)
  bool finish_queued = false, finish_started = false, finished = false;
  grpc::Status status;
};

enum IncomingKind { UNARY = 0, MESSAGE = 1, END = 2, OPEN = 3, HALF_CLOSED = 4 };

struct Incoming {
  uint64_t id;
  std::string method;
  std::string body;
  int kind;
  bool has_token = false;
  std::string token;  // the client's "token" metadata (unary calls and OPEN only)
  bool has_cn = false;
  std::string cn;  // without a token: the common name of the client's verified certificate
};

// The call's "token" metadata into `in` (etcd's clients send their auth token so); without one,
// if `cert_users`, the common name of the certificate the client's TLS handshake verified.
void TakeToken(const grpc::GenericServerContext& ctx, Incoming& in, bool cert_users) {
  auto md = ctx.client_metadata().find("token");
  if (md != ctx.client_metadata().end()) {
    in.has_token = true;
    in.token.assign(md->second.data(), md->second.size());
    return;
  }
  if (!cert_users) return;
  auto auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return;
  auto names = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  if (names.empty()) return;
  in.has_cn = true;
  in.cn.assign(names[0].data(), names[0].size());
}

struct Outgoing {  // an answer `finish` queued for the CQ thread to send
  Call* call;
  int code;
  std::string message;
  std::string body;
};

constexpr int kOutstandingAccepts = 64;

namespace gx = grpc::experimental;

// The Python check a client's certificate must pass at the TLS handshake: check(leaf_pem,
// chain_pem) -> "" to accept, else why it is refused. Called with the GIL, on the gRPC thread
// that runs the handshake; `fn` is set and cleared with the GIL held (the front clears it when
// it stops, so a verifier gRPC keeps after that refuses without touching Python).
struct PyCheck {
  py::object fn;

  grpc::Status Run(const std::string& leaf, const std::string& chain) {
    py::gil_scoped_acquire gil;
    if (!fn) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "verikv: the node is stopping");
    try {
      std::string why = py::str(fn(py::bytes(leaf), py::bytes(chain)));
      if (why.empty()) return grpc::Status::OK;
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why);
    } catch (py::error_already_set& err) {  // a bug in the check: refuse, and say why
      return grpc::Status(grpc::StatusCode::INTERNAL, std::string("verikv: the certificate check failed: ") +
                                                          err.what());
    }
  }
};

// gRPC's hook after it has verified the client's chain against the trusted CA: the Python
// check above decides, before the handshake ends (so a refused client never makes a call).
class CheckVerifier : public gx::ExternalCertificateVerifier {
 public:
  explicit CheckVerifier(std::shared_ptr<PyCheck> check) : check_(std::move(check)) {}
  bool Verify(gx::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    grpc::string_ref leaf = request->peer_cert(), chain = request->peer_cert_full_chain();
    *sync_status = check_->Run(std::string(leaf.data(), leaf.size()), std::string(chain.data(), chain.size()));
    return true;  // answered synchronously
  }
  void Cancel(gx::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<PyCheck> check_;
};

class Front {
 public:
  // With cert_pem and key_pem, clients are served over TLS; with client_cert_auth, a client must
  // present a certificate signed by ca_pem, or the TLS handshake fails before any call starts.
  // With check (a Python callable; needs client_cert_auth), a client whose verified certificate
  // fails check(leaf_pem, chain_pem) (a non-empty answer: why) is refused at the handshake too:
  // gRPC 1.51's TlsServerCredentials with an ExternalCertificateVerifier (CheckVerifier above),
  // run at every handshake after gRPC has verified the chain against ca_pem.
  // max_concurrent_streams > 0: the calls one client connection may have open at once (HTTP/2's
  // SETTINGS_MAX_CONCURRENT_STREAMS; a client queues those beyond it); 0: gRPC's default.
  // max_connections_per_client > 0: the connections one client address may have open at once;
  // calls on one more are answered RESOURCE_EXHAUSTED, and it is closed (connection_limit.h);
  // 0: no limit, and gRPC listens itself.
  Front(const std::string& addr, int max_receive_bytes, const std::vector<std::string>& streaming,
        const std::string& cert_pem, const std::string& key_pem, const std::string& ca_pem,
        bool client_cert_auth, int max_concurrent_streams, py::object check, int max_connections_per_client)
      : streaming_methods_(streaming.begin(), streaming.end()), cert_users_(!cert_pem.empty() && client_cert_auth) {
    grpc::ServerBuilder b;
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (!check.is_none()) {
      if (cert_pem.empty() || !client_cert_auth)
        throw std::invalid_argument("a certificate check needs cert_pem and client_cert_auth");
      check_ = std::make_shared<PyCheck>();
      check_->fn = check;
      auto provider = std::make_shared<gx::StaticDataCertificateProvider>(
          ca_pem, std::vector<gx::IdentityKeyCertPair>{{key_pem, cert_pem}});
      gx::TlsServerCredentialsOptions opts(provider);
      opts.watch_root_certs();
      opts.watch_identity_key_cert_pairs();
      opts.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      opts.set_certificate_verifier(gx::ExternalCertificateVerifier::Create<CheckVerifier>(check_));
      creds = gx::TlsServerCredentials(opts);
    } else if (!cert_pem.empty()) {
      grpc::SslServerCredentialsOptions ssl(
          client_cert_auth ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      ssl.pem_root_certs = ca_pem;
      ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
      creds = grpc::SslServerCredentials(ssl);
    }
    std::unique_ptr<gx::ExternalConnectionAcceptor> acceptor;
    if (max_connections_per_client > 0) {
      limit_ = std::make_unique<verikv_front::ConnectionLimit>(addr, max_connections_per_client);
      port_ = limit_->port();
      acceptor = b.experimental().AddExternalConnectionAcceptor(
          grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, creds);
    } else {
      b.AddListeningPort(addr, creds, &port_);
    }
    b.RegisterAsyncGenericService(&service_);
    b.SetMaxReceiveMessageSize(max_receive_bytes);
    b.SetMaxSendMessageSize(INT_MAX);
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    b.AddChannelArgument(GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE, 8 << 20);
    if (max_concurrent_streams > 0) b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, max_concurrent_streams);
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
    if (limit_) limit_->Start(std::move(acceptor));
  }

  ~Front() { Shutdown(0.0); }

  int fd() const { return efd_; }

  // Bytes sent on stream `id` that its client has not taken yet (queued, or being written); -1
  // if the stream is unknown or finished. A slow client's backlog: the caller bounds it.
  long long Backlog(uint64_t id) {
    std::lock_guard<std::mutex> g(mu_);
    auto st = streams_.find(id);
    if (st == streams_.end() || st->second->finish_queued) return -1;
    return static_cast<long long>(st->second->queued_bytes);
  }

  // Streams not yet closed (a stream closes once finished and its client's side has ended).
  size_t OpenStreams() {
    std::lock_guard<std::mutex> g(mu_);
    return streams_.size();
  }
  int port() const { return port_; }

  // With max_connections_per_client: connections refused so far (each answered, then closed).
  uint64_t RefusedConnections() const { return limit_ ? limit_->refused_total() : 0; }

  // Every message that arrived since the last take: (id, method, bytes, kind, token, cn), kind 0
  // for a unary call's request, 1 for a stream's message, 2 for a stream its client ended, 3 for a
  // new stream (its bytes: the client's "hasleader" metadata), 4 for a stream its client
  // half-closed; token: the client's "token" metadata (bytes) of a unary call or a new stream,
  // else None; cn: without a token, the common name (str) of the client's certificate (see the
  // top of this file), else None.
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
      py::object token = in.has_token ? py::object(py::bytes(in.token)) : py::object(py::none());
      py::object cn = in.has_cn ? py::object(py::str(in.cn)) : py::object(py::none());
      out.append(py::make_tuple(in.id, py::str(in.method), py::bytes(in.body), in.kind, token, cn));
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
    if (it == waiting_.end()) {
      auto st = streams_.find(id);
      if (st == streams_.end() || st->second->finish_queued) return false;
      Call* c = st->second;  // a stream: ends after the messages sent before
      c->finish_queued = true;
      c->status = grpc::Status(static_cast<grpc::StatusCode>(code), message);
      Dirty(c);
      return true;
    }
    outgoing_.push_back(Outgoing{it->second, code, message, std::string(data, static_cast<size_t>(len))});
    waiting_.erase(it);
    ArmAlarm();
    return true;
  }

  // Send each (id, message) of `messages` as `Send` does, in order, under one lock and one
  // wake-up of the CQ thread (a put's events for many watchers go out together). An item may
  // also be (prefix, suffix, [(id, middle), ...]): the message prefix + middle + suffix to each
  // stream named, in that order (one revision's events for many watchers: each message a
  // header, its watch id, the events shared by all, copied here rather than built in Python).
  // Returns the ids of the streams that were unknown or already finished (each once); with
  // `high` >= 0, also the ids of the streams given a message whose backlog (Backlog) is now above
  // `high` (each once), as (failed, over), so that a caller learns which clients fall behind
  // without asking per stream.
  py::object SendMany(py::list messages, long long high) {
    std::vector<std::pair<uint64_t, std::string>> batch;
    batch.reserve(messages.size());
    auto id_of = [](PyObject* o) {
      uint64_t id = PyLong_AsUnsignedLongLong(o);
      if (id == static_cast<uint64_t>(-1) && PyErr_Occurred()) throw py::error_already_set();
      return id;
    };
    auto bytes_of = [](PyObject* o) {
      char* data;
      Py_ssize_t len;
      if (PyBytes_AsStringAndSize(o, &data, &len) != 0) throw py::error_already_set();
      return std::string_view(data, static_cast<size_t>(len));
    };
    for (auto item : messages) {
      PyObject* t = item.ptr();
      if (PyTuple_Check(t) && PyTuple_GET_SIZE(t) == 2) {
        batch.emplace_back(id_of(PyTuple_GET_ITEM(t, 0)), std::string(bytes_of(PyTuple_GET_ITEM(t, 1))));
        continue;
      }
      if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3 || !PyList_Check(PyTuple_GET_ITEM(t, 2)))
        throw py::type_error("send_many: (id, bytes) or (bytes, bytes, [(id, bytes), ...]) items");
      std::string_view prefix = bytes_of(PyTuple_GET_ITEM(t, 0)), suffix = bytes_of(PyTuple_GET_ITEM(t, 1));
      PyObject* targets = PyTuple_GET_ITEM(t, 2);
      Py_ssize_t n = PyList_GET_SIZE(targets);
      batch.reserve(batch.size() + static_cast<size_t>(n));
      for (Py_ssize_t k = 0; k < n; k++) {
        PyObject* target = PyList_GET_ITEM(targets, k);
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) != 2) throw py::type_error("send_many: (id, bytes) targets");
        uint64_t id = id_of(PyTuple_GET_ITEM(target, 0));
        std::string_view middle = bytes_of(PyTuple_GET_ITEM(target, 1));
        std::string m;
        m.reserve(prefix.size() + middle.size() + suffix.size());
        m.append(prefix).append(middle).append(suffix);
        batch.emplace_back(id, std::move(m));
      }
    }
    std::vector<uint64_t> failed, over;
    {
      std::lock_guard<std::mutex> g(mu_);
      Call* last = nullptr;
      for (auto& m : batch) {
        auto st = closing_ ? streams_.end() : streams_.find(m.first);
        if (st == streams_.end() || st->second->finish_queued) {
          if (std::find(failed.begin(), failed.end(), m.first) == failed.end()) failed.push_back(m.first);
          continue;
        }
        Call* c = st->second;
        c->queued_bytes += m.second.size();
        c->writes.push_back(std::move(m.second));
        if (c != last) Dirty(c);
        last = c;
      }
      if (high >= 0) {
        for (auto& m : batch) {
          auto st = streams_.find(m.first);
          if (st != streams_.end() && static_cast<long long>(st->second->queued_bytes) > high &&
              std::find(over.begin(), over.end(), m.first) == over.end())
            over.push_back(m.first);
        }
      }
    }
    py::list failed_ids, over_ids;
    for (auto id : failed) failed_ids.append(id);
    if (high < 0) return std::move(failed_ids);
    for (auto id : over) over_ids.append(id);
    return py::make_tuple(failed_ids, over_ids);
  }

  // Send one message on stream `id`, after those sent before. False if the stream is unknown or
  // already finished.
  bool Send(uint64_t id, py::bytes message) {
    char* data;
    Py_ssize_t len;
    PyBytes_AsStringAndSize(message.ptr(), &data, &len);
    std::lock_guard<std::mutex> g(mu_);
    if (closing_) return false;
    auto st = streams_.find(id);
    if (st == streams_.end() || st->second->finish_queued) return false;
    st->second->writes.emplace_back(data, static_cast<size_t>(len));
    st->second->queued_bytes += static_cast<size_t>(len);
    Dirty(st->second);
    return true;
  }

  // Stop accepting; calls still unanswered end with UNAVAILABLE; in-flight ones get `grace`
  // seconds. Idempotent. Touches no Python object, so it runs without the GIL.
  void Shutdown(double grace_s) {
    if (stopped_) return;
    stopped_ = true;
    {
      py::gil_scoped_release release;
      Stop(grace_s);
    }
    if (check_) check_->fn = py::object();  // with the GIL: handshakes from now on are refused
  }

 private:
  void Stop(double grace_s) {
    std::vector<uint64_t> ids;
    std::vector<Outgoing> out;
    {
      std::lock_guard<std::mutex> g(mu_);
      closing_ = true;
      for (auto& kv : waiting_) ids.push_back(kv.first);
      pending_.clear();
      out.swap(outgoing_);  // answered but not sent yet: send them now (an armed alarm finds none)
      for (auto& kv : streams_) {  // streams end with UNAVAILABLE after what was sent on them
        Call* c = kv.second;
        if (!c->finish_queued) {
          c->finish_queued = true;
          c->status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "verikv: the node is stopping");
        }
        Pump(c);
      }
      dirty_.clear();
    }
    for (auto& o : out) SendAnswer(o);
    for (auto id : ids) FailCall(id, grpc::StatusCode::UNAVAILABLE, "verikv: the node is stopping");
    if (limit_) limit_->Stop();  // no connection handed over any more
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000)));
    cq_->Shutdown();
    if (thread_.joinable()) thread_.join();
    if (efd_ >= 0) close(efd_);
    efd_ = -1;
  }

  void SendAnswer(Outgoing& o) {
    Call* c = o.call;
    c->state = Call::FINISHING;
    if (o.code == 0) {
      grpc::Slice slice(o.body);
      grpc::ByteBuffer bb(&slice, 1);
      c->stream.WriteAndFinish(bb, grpc::WriteOptions(), grpc::Status::OK, &c->accept_op);
    } else {
      c->stream.Finish(grpc::Status(static_cast<grpc::StatusCode>(o.code), o.message), &c->accept_op);
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
    c->stream.Finish(grpc::Status(code, message), &c->accept_op);
  }

  void ArmAlarm() {  // under mu_, so that Shutdown cannot shut the queue down between check and Set
    if (!alarm_armed_) {
      alarm_armed_ = true;
      alarm_.Set(cq_.get(), gpr_time_0(GPR_CLOCK_MONOTONIC), &alarm_tag_);
    }
  }

  void Dirty(Call* c) {  // under mu_: the CQ thread starts the stream's next operation
    dirty_.insert(c);
    ArmAlarm();
  }

  // Under mu_: start the stream's next write, or its finish once every write is done.
  void Pump(Call* c) {
    if (c->writing || c->finish_started) return;
    if (!c->writes.empty()) {
      grpc::Slice slice(c->writes.front());
      c->in_flight_bytes = c->writes.front().size();
      c->writes.pop_front();
      c->out = grpc::ByteBuffer(&slice, 1);
      c->writing = true;
      grpc::WriteOptions options;
      if (c->wrote && !c->writes.empty()) options.set_buffer_hint();  // more follow at once: one flush for them
      c->wrote = true;
      c->stream.Write(c->out, options, &c->write_op);
    } else if (c->finish_queued) {
      c->finish_started = true;
      c->stream.Finish(c->status, &c->finish_op);
    }
  }

  // Under mu_: a stream is deleted once finished and over, with no operation outstanding.
  void MaybeDelete(Call* c) {
    if (c->finished && c->done && !c->reading && !c->writing) {
      streams_.erase(c->id);
      dirty_.erase(c);
      delete c;
    }
  }

  void Notify() {
    uint64_t one = 1;
    ssize_t r = write(efd_, &one, sizeof one);
    (void)r;  // the counter cannot overflow: take() resets it
  }

  // The CQ thread: a stream's operation completed.
  void OnStreamOp(Op* op, bool ok) {
    Call* c = op->call;
    bool signal = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      switch (op->kind) {
        case Op::READ:
          if (closing_) {  // Shutdown finishes the stream; no new operation on it
            c->reading = false;
          } else if (ok) {
            pending_.push_back(Incoming{c->id, c->ctx.method(), Body(c->buf), MESSAGE});
            c->stream.Read(&c->buf, &c->read_op);
            if (!signaled_) signaled_ = signal = true;
          } else {  // the client's side ended (a half-close, or the call is over): keep sending
            c->reading = false;
            if (!c->done && !c->finish_queued) {  // Python decides what a half-close means
              pending_.push_back(Incoming{c->id, c->ctx.method(), std::string(), HALF_CLOSED});
              if (!signaled_) signaled_ = signal = true;
            }
          }
          break;
        case Op::DONE:
          c->done = true;
          if (!c->finish_queued && !closing_) {  // cancelled, or the client went away
            pending_.push_back(Incoming{c->id, c->ctx.method(), std::string(), END});
            if (!signaled_) signaled_ = signal = true;
          }
          break;
        case Op::WRITE:
          c->writing = false;
          c->queued_bytes -= c->in_flight_bytes;
          c->in_flight_bytes = 0;
          if (!ok) {  // the client went away: nothing more reaches it
            c->writes.clear();
            c->queued_bytes = 0;
          }
          Pump(c);
          break;
        case Op::FINISH:
          c->finished = true;
          break;
        default:
          break;
      }
      MaybeDelete(c);
    }
    if (signal) Notify();
  }

  static std::string Body(grpc::ByteBuffer& buf) {
    std::vector<grpc::Slice> slices;
    std::string body;
    if (buf.Dump(&slices).ok()) {
      size_t n = 0;
      for (auto& s : slices) n += s.size();
      body.reserve(n);
      for (auto& s : slices) body.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    buf.Clear();
    return body;
  }

  void RequestNew() {
    auto* c = new Call();
    c->ctx.AsyncNotifyWhenDone(&c->done_op);  // before the call starts, as grpc++ requires
    service_.RequestCall(&c->ctx, &c->stream, cq_.get(), cq_.get(), &c->accept_op);
  }

  void Drain() {
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) {
      if (tag != &alarm_tag_ && static_cast<Op*>(tag)->kind == Op::DONE) delete static_cast<Op*>(tag)->call;
    }
  }

  void Loop() {
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) {
      if (tag == &alarm_tag_) {  // `finish` and `send` queued work: start it all
        std::vector<Outgoing> out;
        {
          std::lock_guard<std::mutex> g(mu_);
          out.swap(outgoing_);
          alarm_armed_ = false;
          for (Call* c : dirty_) Pump(c);
          dirty_.clear();
        }
        for (auto& o : out) SendAnswer(o);
        continue;
      }
      auto* op = static_cast<Op*>(tag);
      auto* c = op->call;
      if (op->kind == Op::DONE && !c->streaming) {  // a unary call is over: gone once answered
        c->done = true;
        if (c->state == Call::FINISHED) delete c;
        continue;
      }
      if (op->kind != Op::ACCEPT) {
        OnStreamOp(op, ok);
        continue;
      }
      switch (c->state) {
        case Call::REQUESTED:
          if (!ok) {  // shutting down: the call never started, so no DONE comes for it
            delete c;
            break;
          }
          if (!stopped_) RequestNew();
          if (limit_ && limit_->AnyMarked()) {  // a connection over its client's limit: refused
            std::string why = limit_->Refusal(c->ctx.peer());
            if (!why.empty()) {
              c->state = Call::FINISHING;
              c->stream.Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, why), &c->accept_op);
              break;
            }
          }
          if (streaming_methods_.count(c->ctx.method())) {
            std::string has_leader;
            auto md = c->ctx.client_metadata().find("hasleader");
            if (md != c->ctx.client_metadata().end()) has_leader.assign(md->second.data(), md->second.size());
            Incoming opened{0, c->ctx.method(), std::move(has_leader), OPEN};
            TakeToken(c->ctx, opened, cert_users_);
            bool signal = false;
            {
              std::lock_guard<std::mutex> g(mu_);
              c->streaming = true;
              c->id = next_id_++;
              streams_[c->id] = c;
              c->reading = true;
              c->stream.Read(&c->buf, &c->read_op);
              opened.id = c->id;
              pending_.push_back(std::move(opened));
              if (!signaled_) signaled_ = signal = true;
            }
            if (signal) Notify();
            break;
          }
          c->state = Call::READING;
          c->stream.Read(&c->buf, &c->accept_op);
          break;
        case Call::READING: {
          if (!ok) {  // the client sent no message, or went away
            c->state = Call::FINISHING;
            c->stream.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "verikv: a unary call needs exactly one request message"),
                             &c->accept_op);
            break;
          }
          Incoming in{0, c->ctx.method(), Body(c->buf), UNARY};
          TakeToken(c->ctx, in, cert_users_);
          bool signal = false;
          {
            std::lock_guard<std::mutex> g(mu_);
            uint64_t id = next_id_++;
            waiting_[id] = c;
            in.id = id;
            pending_.push_back(std::move(in));
            if (!signaled_) signaled_ = signal = true;
          }
          if (signal) Notify();
          break;
        }
        case Call::FINISHING:
          c->state = Call::FINISHED;
          if (c->done) delete c;
          break;
        case Call::FINISHED:
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
  std::shared_ptr<PyCheck> check_;  // with a certificate check: shared with gRPC's verifier
  std::unique_ptr<verikv_front::ConnectionLimit> limit_;  // with max_connections_per_client
  std::mutex mu_;
  std::vector<Incoming> pending_;
  std::unordered_map<uint64_t, Call*> waiting_;
  std::vector<Outgoing> outgoing_;
  std::set<std::string> streaming_methods_;
  const bool cert_users_;  // clients must show a certificate: its common name is handed over
  std::unordered_map<uint64_t, Call*> streams_;  // open streams, by id
  std::set<Call*> dirty_;  // streams with a write or finish for the CQ thread to start
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
      .def(py::init<const std::string&, int, const std::vector<std::string>&, const std::string&,
                    const std::string&, const std::string&, bool, int, py::object, int>(),
           py::arg("listen"), py::arg("max_receive_bytes"), py::arg("streaming") = std::vector<std::string>(),
           py::arg("cert_pem") = "", py::arg("key_pem") = "", py::arg("ca_pem") = "",
           py::arg("client_cert_auth") = false, py::arg("max_concurrent_streams") = 0,
           py::arg("check") = py::none(), py::arg("max_connections_per_client") = 0)
      .def_property_readonly("fd", &Front::fd)
      .def_property_readonly("port", &Front::port)
      .def_property_readonly("open_streams", &Front::OpenStreams)
      .def_property_readonly("refused_connections", &Front::RefusedConnections)
      .def("take", &Front::Take)
      .def("finish", &Front::Finish, py::arg("call_id"), py::arg("code"), py::arg("message"),
           py::arg("response"))
      .def("send", &Front::Send, py::arg("call_id"), py::arg("message"))
      .def("send_many", &Front::SendMany, py::arg("messages"), py::arg("high") = -1)
      .def("backlog", &Front::Backlog, py::arg("call_id"))
      .def("shutdown", &Front::Shutdown, py::arg("grace_s") = 0.0);
}
