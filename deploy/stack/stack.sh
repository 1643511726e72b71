#!/usr/bin/env bash
# The local stack without Docker: weir's broker, edge, stream and sink as
# separate processes on loopback, with the configuration file that
# docker-compose.yml mounts (deploy/compose/weir.yaml).
#
#   deploy/stack/stack.sh up     start everything, wait; Ctrl-C stops it
#   deploy/stack/stack.sh down   stop a stack started elsewhere
#
# `make stack` and `make stack-down` call these. State lives under
# $STACK_DIR (default data/stack): one data directory per process, logs in
# logs/<target>.log, process IDs in pids/<target>. Every address can be
# changed through the variables below (the tests run a stack on free ports).
set -euo pipefail

cd "$(dirname "$0")/../.."

WEIR=${WEIR:-bin/weir}
CONFIG=${CONFIG:-deploy/compose/weir.yaml}
STACK_DIR=${STACK_DIR:-data/stack}
BROKER_KAFKA_ADDR=${BROKER_KAFKA_ADDR:-127.0.0.1:19092}
BROKER_HTTP_ADDR=${BROKER_HTTP_ADDR:-127.0.0.1:9480}
EDGE_HTTP_ADDR=${EDGE_HTTP_ADDR:-127.0.0.1:9481}
STREAM_HTTP_ADDR=${STREAM_HTTP_ADDR:-127.0.0.1:9482}
SINK_HTTP_ADDR=${SINK_HTTP_ADDR:-127.0.0.1:9483}
READY_TIMEOUT=${READY_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}

# Stop order: the edge first (flushes to Kafka), then the stream (ends its
# transaction), then the sink (commits and closes its TSDBs), and the
# broker last, after every client left.
STOP_ORDER=(edge stream sink broker)

log() { printf 'stack: %s\n' "$*" >&2; }

pid_file() { echo "$STACK_DIR/pids/$1"; }

running_pid() {
	local f pid
	f=$(pid_file "$1")
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		echo "$pid"
		return 0
	fi
	return 1
}

# Each target runs in its own session, so a Ctrl-C reaches this script
# only and the targets are stopped in order rather than all at once (a
# second signal would make weir exit without its orderly shutdown).
DETACH=
if command -v setsid >/dev/null; then
	DETACH=setsid
else
	set -m # background jobs then get their own process groups
fi

# start NAME HTTP_ADDR ARGS... runs `weir ARGS...` in the background.
start() {
	local name=$1 http=$2
	shift 2
	mkdir -p "$STACK_DIR/$name"
	$DETACH "$WEIR" "$@" --config "$CONFIG" --data-dir "$STACK_DIR/$name" --http.addr "$http" \
		--kafka.embedded.addr "$BROKER_KAFKA_ADDR" >>"$STACK_DIR/logs/$name.log" 2>&1 &
	echo $! >"$(pid_file "$name")"
	log "started $name (pid $!, http://$http, log $STACK_DIR/logs/$name.log)"
}

wait_ready() {
	local name=$1 http=$2 deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! running_pid "$name" >/dev/null; then
			log "$name exited before it was ready; the end of its log:"
			tail -n 20 "$STACK_DIR/logs/$name.log" >&2 || true
			return 1
		fi
		if curl -fsS -o /dev/null "http://$http/-/ready" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	log "$name not ready after ${READY_TIMEOUT}s: $(curl -sS "http://$http/-/ready" 2>&1 || true)"
	return 1
}

stop_one() {
	local name=$1 pid deadline
	pid=$(running_pid "$name") || { rm -f "$(pid_file "$name")"; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	rm -f "$(pid_file "$name")"
	log "stopped $name"
}

# down stops every target. The marker file (removed by the next `up`)
# tells a running `up` that the stop is deliberate, so it exits quietly
# instead of reporting a crash.
down() {
	local name
	mkdir -p "$STACK_DIR"
	touch "$STACK_DIR/stopped"
	for name in "${STOP_ORDER[@]}"; do
		stop_one "$name"
	done
}

up() {
	if [[ ! -x $WEIR ]]; then
		log "$WEIR not found: run make build (or set WEIR)"
		exit 1
	fi
	mkdir -p "$STACK_DIR/logs" "$STACK_DIR/pids"
	local name pid
	for name in "${STOP_ORDER[@]}"; do
		if pid=$(running_pid "$name"); then
			log "$name is already running (pid $pid); stop it with: make stack-down"
			exit 1
		fi
	done
	rm -f "$STACK_DIR/stopped"
	# Every target shares the stack's filesystem bucket.
	export WEIR_BUCKET_DIR="$STACK_DIR/bucket"
	trap 'log "stopping"; down; exit 0' INT TERM
	trap 'down' EXIT

	start broker "$BROKER_HTTP_ADDR" broker
	wait_ready broker "$BROKER_HTTP_ADDR"
	start edge "$EDGE_HTTP_ADDR" edge
	start stream "$STREAM_HTTP_ADDR" stream --stream.instance-id stack-stream-1
	start sink "$SINK_HTTP_ADDR" sink --sink.instance-id stack-sink-1
	wait_ready edge "$EDGE_HTTP_ADDR"
	wait_ready stream "$STREAM_HTTP_ADDR"
	wait_ready sink "$SINK_HTTP_ADDR"

	cat >&2 <<-EOF
		stack: up — stop with Ctrl-C or make stack-down
		  write     http://$EDGE_HTTP_ADDR/api/v1/write   (X-Scope-OrgID: your tenant)
		  query     http://$SINK_HTTP_ADDR/api/v1/query
		  status    http://$EDGE_HTTP_ADDR/  http://$STREAM_HTTP_ADDR/  http://$SINK_HTTP_ADDR/
		  kafka     $BROKER_KAFKA_ADDR
		  logs      $STACK_DIR/logs/
	EOF
	# Wait while every target runs; if one dies, stop the rest.
	while true; do
		if [[ -e $STACK_DIR/stopped ]]; then
			# `stack.sh down` from elsewhere: let it finish the stop.
			trap - EXIT
			while compgen -G "$STACK_DIR/pids/*" >/dev/null; do sleep 0.2; done
			log "stopped by stack.sh down"
			exit 0
		fi
		for name in "${STOP_ORDER[@]}"; do
			if ! running_pid "$name" >/dev/null; then
				[[ -e $STACK_DIR/stopped ]] && continue 2
				log "$name exited; the end of its log:"
				tail -n 20 "$STACK_DIR/logs/$name.log" >&2 || true
				exit 1
			fi
		done
		sleep 1
	done
}

case ${1:-} in
up) up ;;
down) down ;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
