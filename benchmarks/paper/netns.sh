#!/bin/sh
# Real network emulation for the paper suite (needs root): one Linux network
# namespace per node, joined by veth pairs to a bridge, each node's outgoing
# traffic shaped by tc in its own namespace, so every packet crosses exactly
# one shaped egress (a link's delay is paid once, whatever the pair):
#
#   tandem-c  (coordinator) 10.231.0.1  --veth--+
#   tandem-w1 (worker 1)    10.231.0.2  --veth--+-- bridge tdbr0 (root namespace)
#   ...                                         |
#   tandem-wN (worker N)    10.231.0.(N+1) -----+
#
#   netns.sh up N BW DELAY   e.g. up 4 100mbit 5ms (BW and DELAY in tc's units)
#   netns.sh down            removes everything `up` made
#   netns.sh probe           exit 0 if namespaces, veth, bridge, tbf AND netem
#                            all work here; prints what is missing otherwise
#
# Shaping: `netem delay DELAY` as the root qdisc with `tbf rate BW` under it.
# Kernels without sch_netem (tc says "Specified qdisc kind is unknown") get
# tbf alone; `up` then prints "netem: unavailable" and the caller must add the
# delay elsewhere (the suite adds it in the transport).
set -u
PREFIX=tandem
BR=tdbr0
NET=10.231.0

die() { echo "netns.sh: $*" >&2; exit 1; }

shape() {  # shape NS DEV BW DELAY -> prints "netem: ok" or "netem: unavailable"
    ns=$1 dev=$2 bw=$3 delay=$4
    if ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem delay "$delay" 2>/dev/null; then
        ip netns exec "$ns" tc qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$bw" burst 32kbit latency 400ms ||
            die "tbf under netem failed in $ns"
        echo "netem: ok"
    else
        ip netns exec "$ns" tc qdisc add dev "$dev" root handle 10: tbf rate "$bw" burst 32kbit latency 400ms ||
            die "tbf failed in $ns"
        echo "netem: unavailable"
    fi
}

node() {  # node NAME INDEX(1-based host part) BW DELAY
    ns=$PREFIX-$1 host=$2
    ip netns add "$ns" || die "cannot create namespace $ns"
    ip link add "td-$1" type veth peer name eth0 netns "$ns" || die "cannot create veth for $ns"
    ip link set "td-$1" master "$BR" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$NET.$host/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    shape "$ns" eth0 "$3" "$4"
}

down() {
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-"); do ip netns del "$ns"; done
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^td-'); do
        ip link del "$l" 2>/dev/null
    done
    ip link del "$BR" 2>/dev/null
    return 0
}

case "${1:-}" in
up)
    [ $# -eq 4 ] || die "usage: netns.sh up N BW DELAY"
    n=$2
    down
    ip link add "$BR" type bridge || die "cannot create bridge $BR"
    ip link set "$BR" up
    node c 1 "$3" "$4" | sort -u
    i=1
    while [ "$i" -le "$n" ]; do
        node "w$i" $((i + 1)) "$3" "$4" >/dev/null
        i=$((i + 1))
    done
    echo "up: coordinator $NET.1 in $PREFIX-c, workers $NET.2..$NET.$((n + 1)) in $PREFIX-w1..$PREFIX-w$n"
    ;;
down) down ;;
probe)
    down
    out=$("$0" up 1 100mbit 5ms 2>&1)
    rc=$?
    "$0" down
    [ $rc -eq 0 ] || { echo "namespaces unavailable: $out"; exit 1; }
    case "$out" in *"netem: ok"*) echo "ok"; exit 0 ;; esac
    echo "netem unavailable (the kernel has no sch_netem; tbf works)"
    exit 2
    ;;
*) die "usage: netns.sh up N BW DELAY | down | probe" ;;
esac
