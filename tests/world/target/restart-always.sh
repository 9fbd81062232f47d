#!/usr/bin/env bash
# restart-always.sh - runs a program and starts it again whenever it exits, one second later, as
# the kubelet does for a Pod with restartPolicy Always. virt-controller exits by design when it
# loses its leader lease (a kube-apiserver restart longer than its renew deadline does that); in a
# cluster its Deployment brings it back, here this does. SIGTERM/SIGINT stop the program and then
# this script. Used by target-world.sh; the world stops it by PID like any daemon.
#
# Usage: restart-always.sh PROGRAM [ARGS...]
set -u
child=""
stopping=0
stop() {
  stopping=1
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap stop TERM INT
while :; do
  "$@" &
  child=$!
  wait "$child"
  rc=$?
  # A trapped signal interrupts wait: wait again for the program to end.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    rc=$?
  done
  [ "$stopping" = 1 ] && exit 0
  echo "restart-always: $1 exited with status $rc; starting it again in 1 s" >&2
  sleep 1
  [ "$stopping" = 1 ] && exit 0
done
