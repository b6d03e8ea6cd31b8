// Connections per client address, for the client front (front.cpp): `--max-connections-per-client`.
//
// gRPC 1.51 has no such limit, so with one the front listens itself: this listener accepts each
// connection, counts it against its client's address, and hands it to gRPC through the server's
// external connection acceptor, which builds the transport with the server's own credentials
// (TLS included), as if gRPC had accepted it. A connection from an address that already has the
// maximum open is handed over too, but marked: the front answers every call on it
// RESOURCE_EXHAUSTED with `Refusal()` (so its client is told why, not just reset), and the
// listener shuts it down a second later. Marked connections do not count.
//
// How a connection's end is seen: the listener keeps a duplicate of its socket and waits for
// EPOLLRDHUP/EPOLLHUP on it: the client closed it, reset it, or gRPC shut it down (gRPC shuts a
// socket down, both ways, before it closes it). The duplicate is then closed, and the address's
// count falls.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <grpcpp/server_builder.h>

namespace verikv_front {

// The client address of a socket address, as text, an IPv4-mapped IPv6 address as IPv4 (gRPC
// names such peers "ipv4:..."), and its port.
inline bool ClientOf(const sockaddr_storage& sa, std::string* host, int* port) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (sa.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    *port = ntohs(in->sin_port);
  } else if (sa.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      inet_ntop(AF_INET, reinterpret_cast<const uint8_t*>(&in6->sin6_addr) + 12, text, sizeof text);
    } else {
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    }
    *port = ntohs(in6->sin6_port);
  } else {
    return false;
  }
  *host = text;
  return true;
}

// gRPC's name of a call's peer ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "ipv6:%5B::1%5D:5000")
// as "host|port", the key ConnectionLimit keeps marked connections under.
inline std::string PeerKey(const std::string& peer) {
  std::string rest = peer.substr(peer.find(':') + 1);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return peer;
  std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
  for (const char* junk : {"%5B", "%5D", "[", "]"}) {
    for (size_t at; (at = host.find(junk)) != std::string::npos;) host.erase(at, strlen(junk));
  }
  return host + "|" + port;
}

class ConnectionLimit {
 public:
  // Listens on `addr` (HOST:PORT; a wildcard host, as gRPC does, on every IPv6 and IPv4 address;
  // port 0: one the kernel picks). Throws if it cannot. Start() begins accepting.
  ConnectionLimit(const std::string& addr, int max_per_client) : max_(max_per_client) {
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos) throw std::runtime_error("cannot listen for clients on " + addr);
    std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty() || host == "0.0.0.0" || host == "::") {
      sockaddr_in6 any6{};
      any6.sin6_family = AF_INET6;
      any6.sin6_addr = in6addr_any;
      any6.sin6_port = htons(static_cast<uint16_t>(std::stoi(port)));
      if (!Bind(reinterpret_cast<sockaddr*>(&any6), sizeof any6, true)) {  // no IPv6 here: IPv4 only
        sockaddr_in any4{};
        any4.sin_family = AF_INET;
        any4.sin_addr.s_addr = htonl(INADDR_ANY);
        any4.sin_port = any6.sin6_port;
        if (!Bind(reinterpret_cast<sockaddr*>(&any4), sizeof any4, false))
          throw std::runtime_error("cannot listen for clients on " + addr + ": " + strerror(errno));
      }
    } else {
      addrinfo hints{}, *found = nullptr;
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_PASSIVE;
      int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
      if (rc != 0) throw std::runtime_error("cannot listen for clients on " + addr + ": " + gai_strerror(rc));
      for (addrinfo* a = found; a; a = a->ai_next) {
        if (port_ != 0) {  // port 0: every address on the port the first one got
          if (a->ai_family == AF_INET) reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_port = htons(port_);
          if (a->ai_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_port = htons(port_);
        }
        if (!Bind(a->ai_addr, a->ai_addrlen, false)) {
          std::string why = strerror(errno);
          freeaddrinfo(found);
          Close();
          throw std::runtime_error("cannot listen for clients on " + addr + ": " + why);
        }
      }
      freeaddrinfo(found);
    }
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd_ < 0 || wake_ < 0) {
      Close();
      throw std::runtime_error("cannot listen for clients: epoll or eventfd failed");
    }
    Watch(wake_, EPOLLIN);
    for (int fd : listeners_) Watch(fd, EPOLLIN);
  }

  ~ConnectionLimit() {
    Stop();
    Close();
  }

  int port() const { return port_; }

  // Accept from now on, handing each connection to `acceptor` (gRPC's, once its server runs).
  void Start(std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor) {
    acceptor_ = std::move(acceptor);
    thread_ = std::thread([this] { Loop(); });
  }

  // Stop accepting (clients connecting from now on are refused by the kernel), before the gRPC
  // server shuts down. Connections already handed over stay gRPC's.
  void Stop() {
    if (!thread_.joinable()) return;
    uint64_t one = 1;
    ssize_t r = write(wake_, &one, sizeof one);
    (void)r;
    thread_.join();
    for (int fd : listeners_) close(fd);
    listeners_.clear();
    for (auto& kv : conns_) close(kv.first);  // the duplicates: gRPC's sockets are its own
    conns_.clear();
  }

  // Any marked connection open? The front asks this on every call; Refusal only when it is.
  bool AnyMarked() const { return marked_open_.load(std::memory_order_acquire) > 0; }

  // The refusal for a call from `peer` (its ServerContext's peer()), or "" if its connection is
  // not marked.
  std::string Refusal(const std::string& peer) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = marked_.find(PeerKey(peer));
    return it == marked_.end() ? std::string() : it->second;
  }

  uint64_t refused_total() const { return refused_total_.load(); }

 private:
  struct Conn {
    std::string client;  // its address (the key of per_client_)
    std::string key;     // PeerKey form, for a marked one
    bool marked;
  };
  struct Shut {  // a marked connection to shut down
    std::chrono::steady_clock::time_point when;
    int dup_fd;
    std::string key;
  };

  bool Bind(sockaddr* sa, socklen_t len, bool dual_stack) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    int on = 1, off = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);  // as gRPC's own listener
    if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual_stack ? &off : &on, sizeof on);
    if (bind(fd, sa, len) != 0 || listen(fd, SOMAXCONN) != 0) {
      int err = errno;
      close(fd);
      errno = err;
      return false;
    }
    sockaddr_storage got{};
    socklen_t got_len = sizeof got;
    getsockname(fd, reinterpret_cast<sockaddr*>(&got), &got_len);
    std::string host;
    int port = 0;
    ClientOf(got, &host, &port);
    if (port_ == 0) port_ = port;
    listeners_.push_back(fd);
    return true;
  }

  void Close() {
    for (int fd : listeners_) close(fd);
    listeners_.clear();
    for (auto& kv : conns_) close(kv.first);
    conns_.clear();
    if (epfd_ >= 0) close(epfd_);
    if (wake_ >= 0) close(wake_);
    epfd_ = wake_ = -1;
  }

  void Watch(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void Loop() {
    epoll_event events[64];
    for (;;) {
      int timeout = -1;
      auto now = std::chrono::steady_clock::now();
      if (!to_shut_.empty()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(to_shut_.front().when - now).count();
        timeout = left < 0 ? 0 : static_cast<int>(left) + 1;
      }
      int n = epoll_wait(epfd_, events, 64, timeout);
      if (n < 0 && errno != EINTR) return;
      for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        if (fd == wake_) return;
        if (IsListener(fd)) {
          Accept(fd);
        } else {
          Ended(fd);
        }
      }
      now = std::chrono::steady_clock::now();
      while (!to_shut_.empty() && to_shut_.front().when <= now) {  // a marked connection's second is up
        Shut due = to_shut_.front();
        to_shut_.pop_front();
        auto it = conns_.find(due.dup_fd);  // still open (not a later connection given the same number)
        if (it != conns_.end() && it->second.marked && it->second.key == due.key)
          shutdown(due.dup_fd, SHUT_RDWR);  // gRPC's socket too: gRPC closes it
      }
    }
  }

  bool IsListener(int fd) const {
    for (int l : listeners_)
      if (l == fd) return true;
    return false;
  }

  void Accept(int listener) {
    for (;;) {
      sockaddr_storage sa{};
      socklen_t len = sizeof sa;
      int fd = accept4(listener, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
          usleep(100 * 1000);  // out of descriptors: let some close rather than spin (they wait in the backlog)
        return;  // EAGAIN: none left
      }
      std::string client;
      int port = 0;
      int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (!ClientOf(sa, &client, &port) || dup_fd < 0) {
        if (dup_fd >= 0) close(dup_fd);
        close(fd);
        continue;
      }
      int on = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      Conn conn{client, client + "|" + std::to_string(port), false};
      {
        std::lock_guard<std::mutex> g(mu_);
        int& count = per_client_[client];
        if (count >= max_) {
          conn.marked = true;
          marked_[conn.key] = "verikv: too many connections from " + client + ": at most " +
                              std::to_string(max_) + " per client (--max-connections-per-client)";
          marked_open_.fetch_add(1, std::memory_order_release);
          refused_total_.fetch_add(1);
        } else {
          count++;
        }
      }
      if (conn.marked) to_shut_.push_back({std::chrono::steady_clock::now() + std::chrono::seconds(1), dup_fd, conn.key});
      conns_[dup_fd] = conn;
      Watch(dup_fd, EPOLLRDHUP);  // EPOLLHUP and EPOLLERR come unasked
      grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters p;
      p.listener_fd = listener;
      p.fd = fd;  // gRPC's from now on
      acceptor_->HandleNewConnection(&p);
    }
  }

  void Ended(int dup_fd) {  // the connection is over: its client's count falls
    auto it = conns_.find(dup_fd);
    if (it == conns_.end()) return;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (it->second.marked) {
        marked_.erase(it->second.key);
        marked_open_.fetch_sub(1, std::memory_order_release);
      } else if (--per_client_[it->second.client] == 0) {
        per_client_.erase(it->second.client);
      }
    }
    epoll_ctl(epfd_, EPOLL_CTL_DEL, dup_fd, nullptr);
    close(dup_fd);
    conns_.erase(it);
  }

  const int max_;
  int port_ = 0;
  std::vector<int> listeners_;
  int epfd_ = -1, wake_ = -1;
  std::thread thread_;
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_;
  // the listener's thread only
  std::unordered_map<int, Conn> conns_;  // by the duplicate socket
  std::deque<Shut> to_shut_;  // in the order they are due
  // shared with the front's completion-queue thread
  std::mutex mu_;
  std::unordered_map<std::string, int> per_client_;  // open connections counted, by client address
  std::unordered_map<std::string, std::string> marked_;  // marked connections' refusals, by PeerKey
  std::atomic<int> marked_open_{0};
  std::atomic<uint64_t> refused_total_{0};
};

}  // namespace verikv_front
