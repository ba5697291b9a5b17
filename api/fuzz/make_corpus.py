#!/usr/bin/env python3
"""Writes the seed corpora of the API fuzz harnesses (corpus/<name>/):

- http_server: raw HTTP/1.x as clients send it (curl-style requests,
  pipelining, chunked bodies with trailers, Expect: 100-continue, HEAD,
  HTTP/1.0, bodies over the limit, malformed lines);
- controller: request sequences in controller_fuzz.cpp's format that
  configure and boot a VM the way Firecracker clients do, then pause,
  resume and patch it;
- config_json: config files (the README's example and variants) and the
  request bodies of every route.

Usage: make_corpus.py [OUTDIR] (default: corpus/ beside this script).
"""
import json
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(name, seed, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, seed), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- bodies shared by the controller and config_json seeds ----
BOOT = {"kernel_image_path": "/nonexistent/vmlinuz", "initrd_path": "/nonexistent/initrd.img",
        "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"}
MACHINE = {"vcpu_count": 2, "mem_size_mib": 256, "smt": False, "huge_pages": "None"}
BUCKET = {"size": 1048576, "one_time_burst": 0, "refill_time": 100}
LIMITER = {"bandwidth": BUCKET, "ops": {"size": 1000, "refill_time": 1000}}
DRIVE = {"drive_id": "rootfs", "path_on_host": "/nonexistent/rootfs.ext4", "is_root_device": True,
         "is_read_only": False, "io_engine": "Async", "rate_limiter": LIMITER}
DATA_DRIVE = {"drive_id": "data_1", "path_on_host": "/nonexistent/data.img", "is_root_device": False,
              "partuuid": "0eaa91a0-01", "cache_type": "Writeback", "is_read_only": True}
NET = {"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02",
       "rx_rate_limiter": LIMITER, "tx_rate_limiter": None}
LOGGER = {"log_path": "/nonexistent/hvz.log", "level": "Debug", "show_level": True, "show_log_origin": False}
CONFIG = {
    "boot-source": BOOT,
    "machine-config": MACHINE,
    "drives": [DRIVE, DATA_DRIVE],
    "network-interfaces": [NET],
    "console": {"mode": "file", "path": "/nonexistent/hvc0.log"},
    "logger": LOGGER,
    "metrics": {"metrics_path": "/nonexistent/metrics.json"},
    "serial": {"serial_out_path": "/nonexistent/serial.log"},
    "entropy": {"rate_limiter": {"bandwidth": BUCKET}},
}


def dumps(v):
    return json.dumps(v, separators=(",", ":"))


# ---- http_server ----
def http_corpus():
    n = "http_server"
    write(n, "get-root", "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
    body = dumps(MACHINE)
    put = ("PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n{body}")
    write(n, "put-json", put)
    write(n, "pipelined", "GET /version HTTP/1.1\r\nHost: x\r\n\r\n" + put + "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    write(n, "chunked", "PUT /drives/rootfs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\n{\"a\":\r\n3;ext=1\r\n1}\n\r\n0\r\nX-Trailer: yes\r\n\r\n")
    write(n, "expect-continue", "PUT /actions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                "Content-Length: 32\r\n\r\n{\"action_type\": \"InstanceStart\"}")
    write(n, "expect-continue-no-body", "PUT /actions HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
                                        "Content-Length: 10\r\n\r\n")
    write(n, "http-1.0", "GET / HTTP/1.0\r\n\r\n")
    write(n, "connection-close", "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /version HTTP/1.1\r\n\r\n")
    write(n, "head", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    write(n, "body-over-limit", "PUT /logger HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + "x" * 2000)
    write(n, "chunked-over-limit", "PUT /logger HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "400\r\n" + "y" * 1024 + "\r\n10\r\n" + "z" * 16 + "\r\n0\r\n\r\n")
    write(n, "statuses", "GET /status/99 HTTP/1.1\r\n\r\nGET /status/600 HTTP/1.1\r\n\r\n"
                         "GET /status/304 HTTP/1.1\r\n\r\nGET /status/204 HTTP/1.1\r\n\r\n")
    write(n, "handler-throws", "PATCH /throw HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n\r\n")
    write(n, "malformed-request-line", "GET\r\n\r\n")
    write(n, "bad-content-length", "PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
    write(n, "duplicate-content-length", "PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
    write(n, "obs-fold-header", "GET / HTTP/1.1\r\nX-Long: a\r\n b\r\n\r\n")
    write(n, "lf-only", "GET / HTTP/1.1\nHost: x\n\n")
    write(n, "long-header", "GET / HTTP/1.1\r\nX-Big: " + "a" * 3000 + "\r\n\r\n")
    write(n, "partial", "PUT /boot-source HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"kernel")
    write(n, "query-and-fragment", "GET /machine-config?x=1&y=%20#frag HTTP/1.1\r\n\r\n")


# ---- controller (controller_fuzz.cpp's format) ----
METHODS = ["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "get"]
PATHS = ["/", "/version", "/machine-config", "/vm/config", "/actions", "/boot-source", "/drives/rootfs",
         "/drives/data_1", "/network-interfaces/eth0", "/network-interfaces/eth1", "/vm", "/logger", "/metrics",
         "/serial", "/entropy", "/balloon", "/vsock", "/mmds", "/snapshot/create", "/snapshot/load",
         "/cpu-config", "/drives/",
         "/drives", "/network-interfaces/", "//drives//rootfs", "/drives/rootfs/extra", "/machine-config?x=1",
         "/vm/config/", ""]


def req(method, path, body=None, suffix=None):
    b = (body if isinstance(body, str) else dumps(body) if body is not None else "").encode()
    out = struct.pack("<B", METHODS.index(method))
    if path in PATHS and suffix is None:
        out += struct.pack("<B", PATHS.index(path))
    elif suffix is not None:
        out += struct.pack("<B", 0x80 | PATHS.index(path)) + struct.pack("<H", len(suffix)) + suffix.encode()
    else:
        out += struct.pack("<B", 0x7f) + struct.pack("<H", len(path)) + path.encode()
    return out + struct.pack("<H", len(b)) + b


def controller_seed(name, requests, failures=0, options=0):
    write("controller", name, struct.pack("<BB", failures, options) + b"".join(requests))


def controller_corpus():
    configure = [
        req("PUT", "/boot-source", BOOT),
        req("PUT", "/machine-config", MACHINE),
        req("PUT", "/drives/rootfs", DRIVE),
        req("PUT", "/drives/data_1", DATA_DRIVE),
        req("PUT", "/network-interfaces/eth0", NET),
        req("PUT", "/logger", LOGGER),
        req("PUT", "/metrics", {"metrics_path": "/nonexistent/metrics.json"}),
        req("PUT", "/entropy", {"rate_limiter": {"ops": {"size": 10, "refill_time": 100}}}),
        req("PUT", "/serial", {"serial_out_path": "/nonexistent/serial.log"}),
    ]
    start = req("PUT", "/actions", {"action_type": "InstanceStart"})
    controller_seed("configure-and-start", configure + [req("GET", "/vm/config"), start, req("GET", "/")])
    controller_seed("runtime", configure + [
        start, req("PATCH", "/vm", {"state": "Paused"}), req("GET", "/"), req("PATCH", "/vm", {"state": "Resumed"}),
        req("PATCH", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": "/nonexistent/other.ext4"}),
        req("PATCH", "/drives/rootfs", {"drive_id": "rootfs", "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}}}),
        req("PATCH", "/network-interfaces/eth0", {"iface_id": "eth0", "tx_rate_limiter": LIMITER}),
        req("PUT", "/actions", {"action_type": "SendCtrlAltDel"}), req("PUT", "/actions", {"action_type": "FlushMetrics"}),
        req("GET", "/vm/config"), req("PUT", "/machine-config", MACHINE)])
    controller_seed("backend-fails", configure + [start, start, req("PATCH", "/vm", {"state": "Paused"})], failures=0xff)
    controller_seed("pre-boot-errors", [
        req("PATCH", "/vm", {"state": "Paused"}), req("PUT", "/actions", {"action_type": "SendCtrlAltDel"}),
        start, req("GET", "/machine-config"), req("PATCH", "/machine-config", {"vcpu_count": 4}),
        req("PATCH", "/machine-config", {"vcpu_count": None}), req("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 1}),
        req("GET", "/machine-config"), req("PUT", "/drives/rootfs", dict(DRIVE, drive_id="other")),
        req("PUT", "/drives/data_1", dict(DATA_DRIVE, is_root_device=True)), req("PUT", "/drives/rootfs", DRIVE),
        req("PUT", "/drives/data_1", dict(DATA_DRIVE, is_root_device=True)),
        req("PUT", "/network-interfaces/eth1", dict(NET, iface_id="eth1")), req("GET", "/vm/config")])
    controller_seed("routing", [
        req("GET", "/", "{}"), req("PUT", "/boot-source"), req("DELETE", "/"), req("POST", "/actions", {"a": 1}),
        req("HEAD", "/"), req("get", "/"), req("GET", "/balloon"), req("PUT", "/vsock", {}), req("PUT", "/mmds", {}),
        req("PUT", "/snapshot/create", {}), req("PUT", "/cpu-config", {}), req("PUT", "/drives/", DRIVE),
        req("PUT", "/drives", DRIVE), req("PUT", "//drives//rootfs", DRIVE), req("PUT", "/drives/rootfs/extra", DRIVE),
        req("PUT", "/drives/rootfs", DRIVE, suffix="-bad"), req("GET", "/machine-config?x=1"),
        req("GET", "/vm/config/"), req("GET", ""), req("GET", "relative/path"), req("GET", "/version")])
    controller_seed("bad-bodies", [
        req("PUT", "/boot-source", "{"), req("PUT", "/boot-source", "[]"), req("PUT", "/boot-source", '{"x":1}'),
        req("PUT", "/boot-source", '{"kernel_image_path":"a","kernel_image_path":"b"}'),
        req("PUT", "/machine-config", '{"vcpu_count":1e3,"mem_size_mib":-1}'),
        req("PUT", "/logger", {"level": "Chatty"}), req("PUT", "/actions", {"action_type": 1}),
        req("PUT", "/network-interfaces/eth0", dict(NET, guest_mac="zz:00:00:00:00:00")),
        req("PUT", "/boot-source", "[" * 200 + "]" * 200)])
    create = {"snapshot_type": "Full", "snapshot_path": "vm.snap", "mem_file_path": "vm.mem"}
    load = {"snapshot_path": "vm.snap", "mem_backend": {"backend_type": "File", "backend_path": "vm.mem"},
            "track_dirty_pages": True, "resume_vm": False,
            "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap1"}]}
    controller_seed("snapshot-load", [
        req("PUT", "/logger", LOGGER), req("PUT", "/snapshot/load", load), req("GET", "/"), req("GET", "/vm/config"),
        req("PUT", "/snapshot/create", dict(create, snapshot_type="Diff")), req("PATCH", "/vm", {"state": "Resumed"}),
        req("PUT", "/snapshot/create", create), req("PUT", "/snapshot/load", load), req("PUT", "/boot-source", BOOT)])
    controller_seed("snapshot-create", configure + [
        req("PUT", "/snapshot/create", create), start, req("PUT", "/snapshot/create", create),
        req("PATCH", "/vm", {"state": "Paused"}), req("PUT", "/snapshot/create", dict(create, snapshot_type="Diff")),
        req("PUT", "/snapshot/create", create), req("PUT", "/snapshot/load", load)])
    controller_seed("snapshot-load-fails", [
        req("PUT", "/snapshot/load", load), req("PUT", "/snapshot/load", dict(load, mem_file_path="vm.mem")),
        req("PUT", "/snapshot/load", {"snapshot_path": "vm.snap", "mem_file_path": "vm.mem",
                                      "enable_diff_snapshots": True}),
        req("GET", "/"), req("PUT", "/boot-source", BOOT), req("PUT", "/snapshot/load", load)], failures=0x01)
    controller_seed("check-paths", [req("PUT", "/boot-source", {"kernel_image_path": "/"}),
                                    req("PUT", "/boot-source", {"kernel_image_path": "/dev/null"}),
                                    req("PUT", "/drives/rootfs", dict(DRIVE, path_on_host="/proc/self/status"))],
                    options=1)


# ---- config_json ----
def config_corpus():
    n = "config_json"
    write(n, "full-config", json.dumps(CONFIG, indent=2))
    readme = {
        "boot-source": {"kernel_image_path": "vmlinuz", "initrd_path": "initrd.img",
                        "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"},
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "huge_pages": "None"},
        "drives": [{"drive_id": "rootfs", "path_on_host": "rootfs.ext4", "is_root_device": True, "is_read_only": False}],
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}],
        "console": {"mode": "file", "path": "hvc0.log"},
    }
    write(n, "readme-config", json.dumps(readme, indent=2))
    write(n, "minimal-config", dumps({"boot-source": {"kernel_image_path": "vmlinux"}}))
    write(n, "null-sections", dumps({"boot-source": {"kernel_image_path": "k", "initrd_path": None},
                                     "machine-config": None, "drives": [], "vsock": None, "balloon": None,
                                     "mmds-config": None, "network-interfaces": None}))
    write(n, "unsupported-sections", dumps({"boot-source": {"kernel_image_path": "k"}, "vsock": {"guest_cid": 3}}))
    write(n, "empty-limiters", dumps({"boot-source": {"kernel_image_path": "k"},
                                      "drives": [dict(DRIVE, rate_limiter={"bandwidth": {"size": 0, "refill_time": 0}})],
                                      "entropy": {"rate_limiter": {}}}))
    write(n, "huge-numbers", dumps({"boot-source": {"kernel_image_path": "k"},
                                    "machine-config": {"vcpu_count": 4294967296, "mem_size_mib": 18446744073709551615},
                                    "drives": [dict(DRIVE, rate_limiter={"bandwidth": {"size": 18446744073709551615,
                                                                                      "refill_time": 18446744073709551615}})]}))
    write(n, "duplicate-key", '{"boot-source":{"kernel_image_path":"a"},"boot-source":{"kernel_image_path":"b"}}')
    write(n, "deep-nesting", "[" * 130 + "]" * 130)
    write(n, "unicode-strings", dumps({"boot-source": {"kernel_image_path": "k\u00e9\u0000\ud83d\ude00",
                                                       "boot_args": "\u2028 \\"}}))
    write(n, "multiline-error", '{\n  "boot-source": {\n    "kernel_image_path": 5\n  }\n}\n')
    for name, body in (("boot-source", BOOT), ("machine-config", MACHINE), ("drive", DRIVE), ("data-drive", DATA_DRIVE),
                       ("network-interface", NET), ("rate-limiter", LIMITER), ("logger", LOGGER),
                       ("metrics", {"metrics_path": "m.json"}), ("serial", {"serial_out_path": "s.log"}),
                       ("entropy", {"rate_limiter": LIMITER}), ("console", {"mode": "socket", "path": "/run/c.sock"}),
                       ("drive-update", {"drive_id": "rootfs", "path_on_host": "new.ext4", "rate_limiter": LIMITER}),
                       ("net-update", {"iface_id": "eth0", "rx_rate_limiter": {"ops": BUCKET}}),
                       ("action", {"action_type": "InstanceStart"}), ("vm-state", {"state": "Paused"}),
                       ("snapshot-create", {"snapshot_type": "Diff", "snapshot_path": "s", "mem_file_path": "m"}),
                       ("snapshot-load", {"snapshot_path": "s", "mem_backend": {"backend_path": "u.sock",
                                                                               "backend_type": "Uffd"},
                                          "enable_diff_snapshots": True, "resume_vm": True,
                                          "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap0"}]})):
        write(n, "body-" + name, dumps(body))


def main():
    http_corpus()
    controller_corpus()
    config_corpus()


if __name__ == "__main__":
    main()
