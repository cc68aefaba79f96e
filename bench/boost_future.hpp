// bench/boost_future.hpp: Boost.Thread futures with continuations (.then, when_all), as the benchmarks use them.
//
// BOOST_THREAD_VERSION 5 turns on future::then and when_all. Every continuation is attached with
// boost::launch::sync, which runs it on the thread that makes the future ready (or at once if it is ready):
// the same place an anydefer callback without an executor runs. Boost's default policy for a promise's future
// would start a thread per continuation, which measures thread creation instead.
#pragma once

#ifndef BOOST_THREAD_VERSION
#define BOOST_THREAD_VERSION 5
#endif
#include <boost/thread/future.hpp>
