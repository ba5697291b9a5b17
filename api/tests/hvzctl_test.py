#!/usr/bin/python3
"""hvzctl against the real hvz, without KVM: VMs are configured but never
booted (run --no-start), so every check works on any Linux host.

Usage: hvzctl_test.py HVZCTL HVZ
Ends with "N passed, N failed"; exits 1 when a check failed.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HVZCTL = os.path.abspath(sys.argv[1])
HVZ = os.path.abspath(sys.argv[2])
TIMEOUT = 60  # a hang guard for each hvzctl call, never a timing assertion

passed = 0
failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {what}")
    else:
        failed += 1
        print(f"FAIL - {what}" + (f": {detail}" if detail else ""))
    return cond


def hvzctl(*args, env=None, exe=HVZCTL):
    r = subprocess.run([exe, *args], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    return r


def show(r):
    return f"rc={r.returncode} stdout={r.stdout!r} stderr={r.stderr!r}"


def check_ok(r, what):
    return check(r.returncode == 0, what, show(r))


def check_error(r, what, *needles):
    """Fails with exactly one line "hvzctl: error: ..." containing needles."""
    lines = r.stderr.splitlines()
    good = (r.returncode != 0 and len(lines) == 1 and lines[0].startswith("hvzctl: error: ")
            and all(n.lower() in lines[0].lower() for n in needles))
    return check(good, what, show(r))


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X", "x")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def wait_gone(pid, limit=30.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if process_gone(pid):
            return True
        time.sleep(0.05)
    return False


def ls_json(env):
    r = hvzctl("ls", "--json", env=env)
    try:
        return {vm["name"]: vm for vm in json.loads(r.stdout)}, r
    except (ValueError, KeyError, TypeError):
        return None, r


def write_script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)


def main():
    tmp = tempfile.mkdtemp(prefix="hvzctl-", dir="/tmp")
    rt = os.path.join(tmp, "rt")
    env = dict(os.environ, HVZ_RUNTIME_DIR=rt)
    env.pop("XDG_RUNTIME_DIR", None)
    kernel = os.path.join(tmp, "kernel")
    with open(kernel, "wb") as f:
        f.write(b"\0" * 4096)
    manual = None
    try:
        # --- help and usage -------------------------------------------------
        r = hvzctl("--help", env=env)
        check(r.returncode == 0 and "run" in r.stdout and "ls" in r.stdout, "hvzctl --help",
              show(r))
        for sub in ("run", "start", "pause", "resume", "stop", "status", "config", "ls", "rm"):
            r = hvzctl(sub, "--help", env=env)
            check(r.returncode == 0 and sub in r.stdout and "--help" in r.stdout,
                  f"hvzctl {sub} --help", show(r))
        check_error(hvzctl(env=env), "no subcommand is a usage error")
        check_error(hvzctl("bogus", env=env), "unknown subcommand", "bogus")
        r = hvzctl("run", "--kernel", kernel, "--config-file", kernel, env=env)
        check_error(r, "--kernel with --config-file is refused", "excludes")
        check_error(hvzctl("run", "--name", "x", env=env), "run without a kernel",
                    "--config-file or --kernel")
        check_error(hvzctl("run", "--kernel", kernel, "--name", "bad-name!", env=env),
                    "invalid --name", "invalid VM name")
        check_error(hvzctl("run", "--kernel", kernel, "--drive", kernel + ",rw", env=env),
                    "bad --drive option", "unknown option 'rw'")

        r = hvzctl("ls", env=env)
        check(r.returncode == 0 and r.stdout.split() == ["NAME", "STATE", "VCPUS", "MEMORY",
                                                         "UPTIME", "PID", "SOCKET"],
              "ls with no VMs prints the header only", show(r))

        # --- run --no-start ------------------------------------------------
        r = hvzctl("run", "--no-start", "--kernel", kernel, "--memory", "64", "--name", "t1",
                   env=env)
        check_ok(r, "run --no-start --kernel --memory 64 --name t1")
        check("t1" in r.stdout and "Not started" in r.stdout, "run prints name and state",
              r.stdout)
        sock = os.path.join(rt, "t1", "api.sock")
        check(sock in r.stdout, "run prints the socket", r.stdout)
        for f in ("api.sock", "pid", "console.log", "meta.json"):
            check(os.path.exists(os.path.join(rt, "t1", f)), f"runtime entry has {f}")
        try:
            with open(os.path.join(rt, "t1", "meta.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = {}
        pid = meta.get("pid")
        check(isinstance(pid, int) and not process_gone(pid), "meta.json names a live hvz", meta)
        check(meta.get("name") == "t1" and meta.get("socket") == sock
              and meta.get("command", [None])[0] == HVZ and "--api-sock" in meta["command"],
              "meta.json: name, socket, the hvz next to hvzctl", meta)
        try:
            with open(os.path.join(rt, "t1", "pid")) as f:
                check(f.read().strip() == str(pid), "pid file matches meta.json")
        except OSError as e:
            check(False, "pid file readable", str(e))

        r = hvzctl("ls", env=env)
        row = [l for l in r.stdout.splitlines() if l.startswith("t1 ")]
        check(r.returncode == 0 and len(row) == 1 and "Not started" in row[0]
              and "64 MiB" in row[0] and str(pid) in row[0] and sock in row[0],
              "ls lists t1 as Not started, 64 MiB", show(r))
        vms, r = ls_json(env)
        t1 = (vms or {}).get("t1", {})
        check(vms is not None and t1.get("state") == "Not started" and
              t1.get("memory_mib") == 64 and t1.get("vcpus") == 1 and t1.get("pid") == pid and
              t1.get("socket") == sock and isinstance(t1.get("uptime_seconds"), int),
              "ls --json parses and describes t1", show(r))

        r = hvzctl("config", "t1", env=env)
        try:
            cfg = json.loads(r.stdout)
        except ValueError:
            cfg = {}
        check(r.returncode == 0 and
              cfg.get("boot-source", {}).get("kernel_image_path") == kernel and
              cfg.get("machine-config", {}).get("mem_size_mib") == 64,
              "config t1 shows the boot source and memory", show(r))
        # What `config` prints (Firecracker's shape: every section, null
        # when unset) configures a VM again.
        again = os.path.join(tmp, "again.json")
        with open(again, "w") as f:
            f.write(r.stdout)
        r = hvzctl("run", "--no-start", "--config-file", again, "--name", "t1b", env=env)
        check_ok(r, "run --config-file with what config printed")
        r = hvzctl("config", "t1b", env=env)
        try:
            cfg_again = json.loads(r.stdout)
        except ValueError:
            cfg_again = {}
        check(r.returncode == 0 and cfg_again == cfg, "t1b has t1's configuration", show(r))
        check_ok(hvzctl("stop", "t1b", env=env), "stop t1b")

        r = hvzctl("status", "--json", "t1", env=env)
        try:
            st = json.loads(r.stdout)
        except ValueError:
            st = {}
        check(r.returncode == 0 and st.get("state") == "Not started" and
              st.get("name") == "t1" and st.get("id") == "t1" and st.get("pid") == pid and
              st.get("machine_config", {}).get("mem_size_mib") == 64,
              "status --json t1", show(r))
        r = hvzctl("status", "t1", env=env)
        check(r.returncode == 0 and "Not started" in r.stdout and "64 MiB" in r.stdout,
              "status t1 as a table", show(r))
        r = hvzctl("status", "--json", sock, env=env)
        check(r.returncode == 0 and json.loads(r.stdout or "{}").get("name") == "t1",
              "status by socket path resolves the entry", show(r))

        check_error(hvzctl("pause", "t1", env=env), "pause t1 before start", "not started")
        check_error(hvzctl("resume", "t1", env=env), "resume t1 before start", "not started")
        check_error(hvzctl("run", "--no-start", "--kernel", kernel, "--name", "t1", env=env),
                    "a duplicate live name is refused", "already exists")
        check(not process_gone(pid), "t1 survives the refused duplicate")

        # --- run from a config file -----------------------------------------
        drive = os.path.join(tmp, "disk.img")
        with open(drive, "wb") as f:
            f.truncate(1 << 20)
        config = os.path.join(tmp, "vm.json")
        with open(config, "w") as f:
            json.dump({"boot-source": {"kernel_image_path": kernel, "boot_args": "console=ttyS0"},
                       "machine-config": {"vcpu_count": 2, "mem_size_mib": 32},
                       "drives": [{"drive_id": "rootfs", "path_on_host": drive,
                                   "is_root_device": True, "is_read_only": True}]}, f)
        r = hvzctl("run", "--no-start", "--config-file", config, "--json", env=env)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            out = {}
        name = out.get("name", "")
        check(r.returncode == 0 and name.startswith("vm_") and out.get("state") == "Not started",
              "run --config-file --json with a generated name", show(r))
        r = hvzctl("config", name or "vm_none", env=env)
        try:
            cfg = json.loads(r.stdout)
        except ValueError:
            cfg = {}
        drives = cfg.get("drives", [])
        check(r.returncode == 0 and cfg.get("machine-config", {}).get("vcpu_count") == 2 and
              len(drives) == 1 and drives[0].get("path_on_host") == drive and
              drives[0].get("is_read_only") is True,
              "config of a config-file VM shows its vCPUs and drive", show(r))
        check_ok(hvzctl("stop", name or "vm_none", env=env), "stop the config-file VM")
        # A file hvz --config-file would refuse is refused before an hvz starts.
        bad = os.path.join(tmp, "bad.json")
        for what, body, needle in [
                ("an unknown logger level", {"logger": {"level": "Loud"}}, "LevelFilter"),
                ("a drive id that is no id",
                 {"drives": [{"drive_id": "a/b", "path_on_host": drive,
                              "is_root_device": False, "is_read_only": False}]}, "drive_id"),
                ("malformed JSON", None, "bad.json")]:
            with open(bad, "w") as f:
                f.write("{" if body is None else
                        json.dumps({"boot-source": {"kernel_image_path": kernel}, **body}))
            r = hvzctl("run", "--no-start", "--config-file", bad, "--name", "tbad", env=env)
            check_error(r, f"run --config-file with {what} is refused", "bad.json", needle)
            check(not os.path.exists(os.path.join(rt, "tbad")),
                  f"no runtime entry is left for {what}", str(os.listdir(rt)))

        # --- stale entries ---------------------------------------------------
        r = hvzctl("run", "--no-start", "--kernel", kernel, "--name", "t2", env=env)
        check_ok(r, "run t2")
        vms, _ = ls_json(env)
        pid2 = ((vms or {}).get("t2") or {}).get("pid")
        if isinstance(pid2, int):
            os.kill(pid2, signal.SIGKILL)
            check(wait_gone(pid2), "t2's hvz killed")
        vms, r = ls_json(env)
        check(((vms or {}).get("t2") or {}).get("state") == "exited",
              "ls shows a killed VM as exited", show(r))
        check("hvzctl ls --prune" in r.stderr, "ls suggests --prune for exited VMs", r.stderr)
        r = hvzctl("status", "--json", "t2", env=env)
        check(r.returncode == 0 and json.loads(r.stdout or "{}").get("state") == "exited",
              "status of an exited VM says exited", show(r))
        check_error(hvzctl("config", "t2", env=env), "config of an exited VM", "has exited",
                    "hvzctl rm t2")
        r = hvzctl("ls", "--prune", env=env)
        check(r.returncode == 0 and "t2" not in r.stdout and
              not os.path.exists(os.path.join(rt, "t2")), "ls --prune removes t2", show(r))

        r = hvzctl("run", "--no-start", "--kernel", kernel, "--name", "t5", env=env)
        vms, _ = ls_json(env)
        pid5 = ((vms or {}).get("t5") or {}).get("pid")
        check_error(hvzctl("rm", "t5", env=env), "rm of a live VM is refused", "still running")
        check_ok(hvzctl("rm", "--force", "t5", env=env), "rm --force t5")
        check(isinstance(pid5, int) and wait_gone(pid5, 5) and
              not os.path.exists(os.path.join(rt, "t5")), "rm --force killed t5 and removed it")

        # --- stop ------------------------------------------------------------
        r = hvzctl("stop", "t1", env=env)
        check_ok(r, "stop t1")
        check(process_gone(pid), "stop t1 ended hvz")
        check(not os.path.exists(os.path.join(rt, "t1")), "stop t1 removed the entry")
        check_error(hvzctl("stop", "t1", env=env), "stop t1 again", "no VM named 't1'")

        # --- errors ----------------------------------------------------------
        for sub in ("status", "config", "start", "pause", "stop"):
            check_error(hvzctl(sub, "nope", env=env), f"{sub} of an unknown name",
                        "no VM named 'nope'")
        check_error(hvzctl("status", "bad-name", env=env), "status of an invalid name",
                    "invalid VM name")

        r = hvzctl("run", "--no-start", "--kernel", kernel, "--name", "t4", "--hvz",
                   os.path.join(tmp, "no-such-hvz"), env=env)
        check_error(r, "a missing --hvz binary", "not found", "no-such-hvz")
        check(not os.path.exists(os.path.join(rt, "t4")), "no entry left by a missing hvz")
        lonely = os.path.join(tmp, "lonely")
        os.mkdir(lonely)
        shutil.copy(HVZCTL, os.path.join(lonely, "hvzctl"))
        r = hvzctl("run", "--no-start", "--kernel", kernel, "--name", "t4", env=env,
                   exe=os.path.join(lonely, "hvzctl"))
        check_error(r, "no hvz next to hvzctl", os.path.join(lonely, "hvz"), "--hvz")

        dying = os.path.join(tmp, "dying-hvz")
        write_script(dying, "echo 'boom: cannot do it' >&2\nexit 3\n")
        r = hvzctl("run", "--no-start", "--kernel", kernel, "--name", "t4", "--hvz", dying,
                   env=env)
        check_error(r, "hvz dying before its API answers", "exited with status 3",
                    "boom: cannot do it")
        check(not os.path.exists(os.path.join(rt, "t4")), "no entry left by a dying hvz")
        mute = os.path.join(tmp, "mute-hvz")
        write_script(mute, "echo waiting\nexec sleep 300\n")
        r = hvzctl("run", "--no-start", "--kernel", kernel, "--name", "t4", "--hvz", mute,
                   "--timeout", "0.5", env=env)
        check_error(r, "hvz never answering", "did not answer", "waiting")
        check(not os.path.exists(os.path.join(rt, "t4")), "no entry left by a mute hvz")

        dead = os.path.join(tmp, "dead.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(dead)
        s.close()
        check_error(hvzctl("status", dead, env=env), "a dead socket",
                    f"cannot connect to {dead}: Connection refused")
        missing = os.path.join(tmp, "missing.sock")
        check_error(hvzctl("status", missing, env=env), "a missing socket",
                    f"cannot connect to {missing}: No such file or directory")
        check_error(hvzctl("stop", dead, env=env), "stop of a dead socket", "cannot connect")

        # --- a hvz started by hand, addressed by its socket -------------------
        msock = os.path.join(tmp, "manual.sock")
        manual = subprocess.Popen([HVZ, "--api-sock", msock, "--id", "manual"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        end = time.monotonic() + TIMEOUT
        while not os.path.exists(msock) and manual.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        r = hvzctl("status", "--json", msock, env=env)
        try:
            st = json.loads(r.stdout)
        except ValueError:
            st = {}
        check(r.returncode == 0 and st.get("id") == "manual" and st.get("pid") == manual.pid
              and st.get("name") is None, "status of a bare socket (pid from SO_PEERCRED)",
              show(r))
        check_ok(hvzctl("stop", msock, env=env), "stop a bare socket")
        try:
            manual.wait(timeout=TIMEOUT)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
        check(stopped and not os.path.exists(msock), "the hand-started hvz exited, socket gone")

        r = hvzctl("ls", "--json", env=env)
        check(r.returncode == 0 and json.loads(r.stdout or "null") == [],
              "ls --json is empty at the end", show(r))
    except Exception as e:  # a broken step fails the run, not the clean-up
        check(False, "unexpected exception", repr(e))
    finally:
        if manual and manual.poll() is None:
            manual.kill()
            manual.wait()
        if os.path.isdir(rt):
            for name in os.listdir(rt):
                try:
                    with open(os.path.join(rt, name, "meta.json")) as f:
                        p = json.load(f).get("pid", 0)
                    if p > 0 and not process_gone(p):
                        os.kill(p, signal.SIGKILL)
                except (OSError, ValueError, AttributeError):
                    pass
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
