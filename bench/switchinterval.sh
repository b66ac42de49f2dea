#!/usr/bin/env bash
# Does lowering sys.setswitchinterval pay while several Ps are busy?  Runs
# examples/echo_server.py at GOMAXPROCS=1 and 2 with the default 5 ms switch
# interval and with 0.5 ms, 100 connections of 64-byte round trips from
# bench/echo_client.c, twice each (interleaved).  Run it from outside the
# checkout (so the installed pygmp is imported) with the venv's python as PY:
#   cd /tmp && PY=/path/to/venv/bin/python bash /path/to/bench/switchinterval.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PY:-python3}
set -e
cc -O2 -o /tmp/echo_client "$HERE/echo_client.c"
for swi in 0.005 0.0005 0.005 0.0005; do
  for procs in 1 2; do
    GOMAXPROCS=$procs "$PY" -c "
import sys; sys.setswitchinterval($swi); sys.argv=['echo_server.py','--gomaxprocs','$procs','127.0.0.1:47123']
import runpy; runpy.run_path('$HERE/../examples/echo_server.py', run_name='__main__')" > /tmp/srv.out 2>&1 &
    pid=$!; sleep 1.5
    echo "swi=$swi P=$procs $(/tmp/echo_client load 127.0.0.1 47123 100 4 1 64)"
    kill -TERM $pid; wait $pid || true
  done
done
