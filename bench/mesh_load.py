#!/usr/bin/env python3
"""Grows or shrinks the mesh for bench/mesh_scale.sh: registers (or removes)
extra passing instances of service 'users' in the agent's catalog, on
external nodes, through /v1/txn (Consul 1.8.7: at most 64 operations per
transaction) over one keep-alive connection.

  mesh_load.py CONSUL_ADDR FROM TO PORT[,PORT...]

Extra instance i (0-based) is 'users-mesh-<i>' on node 'mesh-<i // 31>'
(one node op, then 31 service ops and 31 service-check ops: 63 per
transaction), at 127.0.0.1 and the i-th port of the list in turn: the real
users nodes answer for it. FROM is how many there are now, TO how many
there must be; going down removes whole nodes, or single instances at the
edge. Prints the seconds it took."""
import http.client
import json
import sys
import time
import urllib.parse

PER_NODE = 31  # 1 + 2 * 31 = 63 operations, under the limit of 64


def node(i):
    return "mesh-%05d" % (i // PER_NODE)


def sid(i):
    return "users-mesh-%05d" % i


def add_ops(lo, hi, ports):
    ops, last = [], None
    for i in range(lo, hi):
        if node(i) != last:
            last = node(i)
            ops.append({"Node": {"Verb": "set", "Node": {
                "Node": last, "Address": "127.0.0.1", "Meta": {"bench": "mesh"}}}})
        ops.append({"Service": {"Verb": "set", "Node": last, "Service": {
            "ID": sid(i), "Service": "users", "Address": "127.0.0.1",
            "Port": ports[i % len(ports)]}}})
        ops.append({"Check": {"Verb": "set", "Check": {
            "Node": last, "CheckID": "service:" + sid(i), "Name": "users",
            "Status": "passing", "ServiceID": sid(i), "ServiceName": "users"}}})
    return ops


def remove_ops(to, now):
    """Removes instances to..now-1 of the 0..now-1 there are."""
    ops = []
    for k in range(to // PER_NODE, (now + PER_NODE - 1) // PER_NODE):
        first = k * PER_NODE
        if first >= to:
            ops.append({"Node": {"Verb": "delete", "Node": {"Node": node(first)}}})
            continue
        for i in range(to, min(now, first + PER_NODE)):
            ops.append({"Check": {"Verb": "delete", "Check": {
                "Node": node(i), "CheckID": "service:" + sid(i)}}})
            ops.append({"Service": {"Verb": "delete", "Node": node(i),
                                    "Service": {"ID": sid(i), "Service": "users"}}})
    return ops


def batches(ops):
    """Transactions of at most 64 operations, a node's set never split
    from its services (add_ops keeps each node's 63 together)."""
    out, cur = [], []
    for op in ops:
        if "Node" in op and op["Node"]["Verb"] == "set" and cur:
            out.append(cur)
            cur = []
        if len(cur) == 64:
            out.append(cur)
            cur = []
        cur.append(op)
    if cur:
        out.append(cur)
    return out


def main():
    addr, lo, hi, ports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ports = [int(p) for p in ports.split(",")]
    u = urllib.parse.urlsplit(addr)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    t0 = time.monotonic()
    # growing onto a node partly filled before sets the node again (harmless)
    ops = add_ops(lo, hi, ports) if hi > lo else remove_ops(hi, lo)
    for batch in batches(ops):
        conn.request("PUT", "/v1/txn", body=json.dumps(batch),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit("mesh_load: txn answered %d: %s" % (r.status, body[:300]))
    print("%.2f" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
