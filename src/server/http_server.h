// HTTP/1.1 transport on Boost.Beast: one io_context run by a few threads, one session per
// connection (keep-alive, one request at a time). Handlers answer asynchronously through a
// Reply that may be called from any thread (e.g. the job worker), so a long job never blocks
// an I/O thread and /health, /ready and /interrupt stay responsive while images are made.
//
// The transport enforces the body limit itself (413 before the body is read when
// Content-Length says so, or as soon as a chunked body crosses it) and answers malformed
// HTTP with 400; the response bodies of those come from the application's ErrorResponder so
// every response is JSON and logged the same way.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sd35/status.h"

namespace sd35::server {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Completes one request. Call exactly once, from any thread; later calls are ignored.
using Reply = std::function<void(Response)>;
using Handler = std::function<void(Request&& request, Reply reply)>;
// A transport-level error for a request whose headers are known (status: 400 or 413).
using ErrorResponder =
    std::function<Response(const Request& headers, http::status status, const std::string& why)>;

struct HttpServerOptions {
  std::string host = "::";
  uint16_t port = 3000;
  uint64_t max_body_bytes = uint64_t(100) << 20;
  int threads = 2;
  // Reading a request (headers and body) and writing a response must each finish within this.
  std::chrono::seconds io_timeout{120};
  // An idle keep-alive connection is closed after this.
  std::chrono::seconds idle_timeout{30};
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, Handler handler, ErrorResponder on_error);
  ~HttpServer();

  // Binds and listens. With host "::" and no IPv6 on the machine it falls back to 0.0.0.0
  // (*note says so). Port 0 picks a free port (port()).
  Status listen(std::string* note = nullptr);
  uint16_t port() const { return bound_port_; }
  std::string bound_address() const { return bound_address_; }

  // Starts the I/O threads (returns at once).
  void start();
  // Stops accepting, closes the io_context and joins the threads.
  void stop();

  boost::asio::io_context& io() { return io_; }

 private:
  void do_accept();

  HttpServerOptions options_;
  Handler handler_;
  ErrorResponder on_error_;
  boost::asio::io_context io_;
  struct Acceptor;
  std::unique_ptr<Acceptor> acceptor_;
  uint16_t bound_port_ = 0;
  std::string bound_address_;
  std::vector<std::thread> threads_;
};

}  // namespace sd35::server
