#!/bin/sh
# What `make bench` needs beyond the build: gnuplot for the chart (the
# gnuplot-nox package: without X or Qt) and the Boost headers for the C++
# baseline.
set -eu
exec sh scripts/deps.sh --install none gnuplot-nox=/usr/bin/gnuplot \
  libboost1.74-dev=/usr/include/boost/process.hpp
