#include "server/http_server.h"

#include <atomic>
#include <cstdio>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <optional>

namespace sd35::server {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {

// What every session needs; shared so that a session kept alive by a pending job callback
// never points into a destroyed HttpServer.
struct Context {
  HttpServerOptions options;
  Handler handler;
  ErrorResponder on_error;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<const Context> ctx)
      : stream_(std::move(socket)), ctx_(std::move(ctx)) {}

  void start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::read_header, shared_from_this()));
  }

 private:
  void read_header() {
    parser_.emplace();
    parser_->header_limit(64 * 1024);
    parser_->body_limit(ctx_->options.max_body_bytes);
    stream_.expires_after(ctx_->options.idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    // Beast compares Content-Length with the body limit while parsing the header already.
    if (ec == http::error::body_limit)
      return fail_and_close(http::status::payload_too_large,
                            "the request body is larger than " + limit_text());
    if (ec) return on_read_error(ec);
    const auto& header = parser_->get();
    if (parser_->content_length() && *parser_->content_length() > ctx_->options.max_body_bytes)
      return fail_and_close(http::status::payload_too_large, "the request body is larger than " +
                                                                 limit_text());
    stream_.expires_after(ctx_->options.io_timeout);
    // curl and others wait for "100 Continue" before sending a large body.
    auto expect = header.find(http::field::expect);
    if (expect != header.end() && beast::iequals(expect->value(), "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     header.version());
      auto self = shared_from_this();
      http::async_write(stream_, *cont, [self, cont](beast::error_code wec, size_t) {
        if (wec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, size_t) {
    if (ec == http::error::body_limit)
      return fail_and_close(http::status::payload_too_large,
                            "the request body is larger than " + limit_text());
    if (ec) return on_read_error(ec);
    Request request = parser_->release();
    parser_.reset();
    keep_alive_ = request.keep_alive();
    head_ = request.method() == http::verb::head;
    // While the handler (maybe a queued job) works, no timer runs: the client chose to wait.
    stream_.expires_never();
    auto self = shared_from_this();
    auto replied = std::make_shared<std::atomic<bool>>(false);
    auto executor = stream_.get_executor();
    Reply reply = [self, replied, executor](Response response) {
      if (replied->exchange(true)) return;
      net::post(executor, [self, r = std::move(response)]() mutable {
        self->write(std::move(r), self->keep_alive_);
      });
    };
    try {
      ctx_->handler(std::move(request), reply);
    } catch (const std::exception& e) {
      // A handler bug must cost one request, not the process.
      reply(ctx_->on_error(Request{}, http::status::internal_server_error, e.what()));
    }
  }

  void on_read_error(beast::error_code ec) {
    // Malformed HTTP gets a 400; a closed or timed-out connection just ends.
    if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return fail_and_close(http::status::bad_request, "malformed HTTP request: " + ec.message());
    close();
  }

  std::string limit_text() const {
    const double mb = double(ctx_->options.max_body_bytes) / double(1 << 20);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g MB (MAX_BODY_SIZE_MB)", mb);
    return buf;
  }

  // Answers and closes, reading (and discarding) what the client still sends for a moment:
  // closing with unread data makes the kernel send a reset, and the client would see that
  // instead of our response.
  void fail_and_close(http::status status, const std::string& why) {
    const Request headers = parser_ ? Request(parser_->get().base()) : Request{};
    parser_.reset();
    Response response = ctx_->on_error(headers, status, why);
    write(std::move(response), false);
  }

  void write(Response response, bool keep_alive) {
    response.keep_alive(keep_alive);
    response.prepare_payload();
    // HEAD: the headers of the GET answer (Content-Length included), no body.
    if (head_) response.body().clear();
    head_ = false;
    response_ = std::make_shared<Response>(std::move(response));
    stream_.expires_after(ctx_->options.io_timeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        self->response_.reset();
                        if (ec) return self->close();
                        if (keep_alive) return self->read_header();
                        self->linger();
                      });
  }

  void linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(5));
    discarded_ = 0;
    discard();
  }

  void discard() {
    stream_.async_read_some(net::buffer(discard_buf_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->discarded_ += n;
                              if (ec || self->discarded_ > (uint64_t(256) << 20))
                                return self->close();
                              self->discard();
                            });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  std::shared_ptr<const Context> ctx_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Response> response_;
  bool keep_alive_ = true;
  bool head_ = false;
  uint64_t discarded_ = 0;
  char discard_buf_[16384];
};

}  // namespace

struct HttpServer::Acceptor {
  explicit Acceptor(net::io_context& io) : acceptor(io) {}
  tcp::acceptor acceptor;
  std::shared_ptr<const Context> ctx;
};

HttpServer::HttpServer(HttpServerOptions options, Handler handler, ErrorResponder on_error)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      on_error_(std::move(on_error)),
      acceptor_(std::make_unique<Acceptor>(io_)) {
  acceptor_->ctx = std::make_shared<Context>(Context{options_, handler_, on_error_});
}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::listen(std::string* note) {
  beast::error_code ec;
  net::ip::address address = net::ip::make_address(options_.host, ec);
  if (ec) return invalid_argument("HOST '" + options_.host + "' is not an IP address");
  auto try_bind = [&](const net::ip::address& a) -> beast::error_code {
    beast::error_code e;
    tcp::acceptor& acc = acceptor_->acceptor;
    if (acc.is_open()) acc.close(e);
    const tcp::endpoint ep(a, options_.port);
    acc.open(ep.protocol(), e);
    if (e) return e;
    // "::" should also accept IPv4 clients (dual-stack), whatever the sysctl default is.
    if (a.is_v6()) acc.set_option(net::ip::v6_only(false), e);
    acc.set_option(net::socket_base::reuse_address(true), e);
    acc.bind(ep, e);
    if (e) return e;
    acc.listen(net::socket_base::max_listen_connections, e);
    return e;
  };
  ec = try_bind(address);
  if (ec && address.is_v6() && address.to_v6().is_unspecified()) {
    // A container without IPv6: serve IPv4 rather than not at all.
    const std::string why = ec.message();
    ec = try_bind(net::ip::address_v4::any());
    if (!ec && note) *note = "IPv6 unavailable (" + why + "), listening on 0.0.0.0";
  }
  if (ec)
    return io_error("cannot listen on " + options_.host + " port " +
                    std::to_string(options_.port) + ": " + ec.message());
  const tcp::endpoint local = acceptor_->acceptor.local_endpoint(ec);
  bound_port_ = local.port();
  bound_address_ = local.address().to_string();
  do_accept();
  return ok_status();
}

void HttpServer::do_accept() {
  acceptor_->acceptor.async_accept(
      net::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
        if (!acceptor_->acceptor.is_open()) return;
        if (!ec) std::make_shared<Session>(std::move(socket), acceptor_->ctx)->start();
        do_accept();
      });
}

void HttpServer::start() {
  for (int i = 0; i < std::max(1, options_.threads); ++i)
    threads_.emplace_back([this] {
      // An exception escaping a handler (e.g. out of memory) costs that handler, not the
      // process: the thread goes back to running the io_context.
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "sd35-server: handler failed: %s\n", e.what());
        } catch (...) {
          std::fprintf(stderr, "sd35-server: handler failed\n");
        }
      }
    });
}

void HttpServer::stop() {
  if (threads_.empty() && io_.stopped()) return;
  net::post(io_, [this] {
    beast::error_code ec;
    acceptor_->acceptor.close(ec);
  });
  io_.stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace sd35::server
