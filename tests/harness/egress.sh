#!/usr/bin/env bash
# Cut a Molecule node container off the network, all but the test's own addresses, and record
# every packet it still tries to send elsewhere (proof of issue 12's "zero network").
#
#   egress.sh cut   CONTAINER [IP[:PORT] ...] only loopback, replies, and TCP to each IP:PORT, or to
#                                            any port of each IP (the test's own services: the
#                                            control plane on the controller, the other node
#                                            containers) leave the container; everything else
#                                            (DNS included, IPv4 and IPv6; only ICMPv6, the kernel's
#                                            link-local neighbour discovery, passes) is rejected at
#                                            once and its destination recorded
#   egress.sh check CONTAINER                print the rejected packets and their destinations;
#                                            exit 1 when there were any
#
# The rules live in the container's own network namespace (entered from the host with nsenter;
# the container has no NET_ADMIN), so other scenarios' containers are untouched and destroying the
# container removes them. Destinations are recorded with the xt_recent match (--rdest), readable
# in the namespace's /proc/net/xt_recent/labhub_egress.
set -euo pipefail
cmd=${1:?usage: egress.sh cut|check CONTAINER [IP[:PORT] ...]}
name=${2:?container name}
shift 2
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
[ "$pid" -gt 0 ] || { echo "egress: container $name is not running" >&2; exit 2; }
ns() { nsenter --target "$pid" --net "$@"; }

case $cmd in
  cut)
    for ipt in iptables ip6tables; do
      ns "$ipt" -F OUTPUT
      ns "$ipt" -N LABHUB_EGRESS 2>/dev/null || ns "$ipt" -F LABHUB_EGRESS
      ns "$ipt" -A LABHUB_EGRESS -m recent --rdest --name labhub_egress --set
      ns "$ipt" -A LABHUB_EGRESS -j REJECT
      ns "$ipt" -A OUTPUT -o lo -j ACCEPT
      ns "$ipt" -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    done
    # IPv6 neighbour discovery and multicast listener reports: the kernel's own link-local
    # housekeeping on the interface, no way to reach a service
    ns ip6tables -A OUTPUT -p ipv6-icmp -j ACCEPT
    for allow in "$@"; do
      if [[ $allow == *:* ]]; then
        ns iptables -A OUTPUT -d "${allow%:*}" -p tcp --dport "${allow##*:}" -j ACCEPT
      else
        ns iptables -A OUTPUT -d "$allow" -p tcp -j ACCEPT
      fi
    done
    for ipt in iptables ip6tables; do
      ns "$ipt" -A OUTPUT -j LABHUB_EGRESS
    done
    echo "egress: $name may reach only loopback${*:+ and $*}"
    ;;
  check)
    total=0
    for ipt in iptables ip6tables; do
      n=$(ns "$ipt" -L LABHUB_EGRESS -v -x -n 2>/dev/null | awk 'NR==3 {print $1}') || n=
      [ -n "$n" ] || { echo "egress: $name has no $ipt LABHUB_EGRESS chain (was it cut?)" >&2; exit 2; }
      total=$((total + n))
    done
    dests=$(ns cat /proc/net/xt_recent/labhub_egress 2>/dev/null \
            | sed -n 's/^src=\([^ ]*\).*/\1/p' | sort -u | tr '\n' ' ')
    if [ "$total" -gt 0 ]; then
      echo "egress: $name tried to reach the network: $total packet(s) rejected, to: ${dests:-?}"
      exit 1
    fi
    echo "egress: $name sent nothing beyond its allowed addresses (0 packets rejected)"
    ;;
  *)
    echo "egress: unknown command $cmd" >&2
    exit 2
    ;;
esac
