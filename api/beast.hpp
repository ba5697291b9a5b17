// Boost.Asio/Beast for hvz's HTTP over Unix sockets (server, client,
// tests), included in one place: GCC 12 with -fsanitize=address reports
// -Wmaybe-uninitialized inside Beast's boost::optional uses (a false
// positive), so that warning is off for these headers only and -Werror
// stays for the rest.
#pragma once

#pragma GCC diagnostic push
#if !defined(__clang__)  // clang has no such warning (and would warn of that)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#pragma GCC diagnostic pop
