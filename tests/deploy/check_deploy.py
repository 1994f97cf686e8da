#!/usr/bin/python3
"""Checks the deployment files of deploy/ against the real binaries.

  /usr/bin/python3 check_deploy.py --source_dir=REPO --export_server=PATH --export_worker=PATH \
      [--exportctl=PATH] CHECK

CHECK is one of:
  files          every YAML file of deploy/ parses (also multi-document ones); every flag passed
                 to export-server or export-worker (Dockerfile CMD/ENTRYPOINT, Compose command,
                 Kubernetes command/args, systemd ExecStart=, commands in docs/deployment.md)
                 is a flag of that binary; and the files agree with each other: ports, probe
                 paths, Service selectors, volumes, the signing key, shutdown times, packages.
  env            every EXPORTD_* variable names a flag of the binary it configures, by the rule
                 EXPORTD_<FLAG_NAME_IN_UPPER_CASE> (EXPORTD_DATA_DIR is --data_dir).
  libraries      the Dockerfile's runtime packages hold every shared library that the binaries
                 (exportctl too, when given) link (readelf + ldd + dpkg -S), and its package
                 names exist (apt-cache policy).
  probes         a real export-server answers 200 on every HTTP path that a probe or health
                 check of the files requests, and the health-check commands of the Dockerfile and
                 docker-compose.yml succeed against it.
  systemd-verify `systemd-analyze verify` finds nothing to report in the units.
  self-test      broken copies of the files (in memory: an unknown flag, a wrong env variable, a
                 probe on a missing port, ...) make the checks above fail.

The flags of a binary are read from its --help and --helpfull output. Exit code 0: passed,
1: failed, 77: skipped (a tool the check needs is missing).
"""

import argparse
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

import yaml

# libyaml's loader where python3-yaml has it (it does in Debian), Python's otherwise.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text):
    return yaml.load(text, Loader=LOADER)


def load_yaml_all(text):
    return list(yaml.load_all(text, Loader=LOADER))


SKIP = 77
BINARIES = ("export-server", "export-worker")
# The HTTP paths that probes and health checks may use.
PROBE_PATHS = ("/healthz", "/readyz")
# absl's usage flags, which --helpfull does not list.
ABSL_USAGE_FLAGS = {"help", "helpfull", "helpshort", "helppackage", "helpon", "helpmatch",
                    "version", "only_check_args"}
# Positional arguments a binary accepts (as its first argument).
SUBCOMMANDS = {"export-server": set(), "export-worker": {"seed-demo"}}
# Packages of deploy/install-deps.sh that only the tests and tools use, not the image build.
# openssl: the CLI with which tls_test makes its throwaway CA and certificates.
TEST_ONLY_PACKAGES = {"clang-format", "libbenchmark-dev", "sqlite3", "curl", "procps", "python3",
                      "python3-grpcio", "python3-protobuf", "python3-yaml", "nodejs", "npm",
                      "clang-14", "libclang-rt-14-dev", "llvm-14", "openssl"}
# Packages that every debian:bookworm image already has.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}
# `docker stop` sends SIGKILL this long after SIGTERM unless told otherwise.
DOCKER_STOP_TIMEOUT = 10.0
COMPOSE_FILE = "deploy/docker-compose.yml"
DOCKERFILE = "deploy/Dockerfile"
K8S_DIR = "deploy/k8s/"
SYSTEMD_DIR = "deploy/systemd/"
DOCS = "docs/deployment.md"
ENV_NAME = re.compile(r"\bEXPORTD_[A-Z0-9][A-Z0-9_]*\b")
TIMEOUT = 20  # seconds: process start and exit, each HTTP request


# ---------------------------------------------------------------------------------------------
# The binaries' flags


class Flags:
    """The flags of one binary: names and, where --helpfull shows one, the default value."""

    def __init__(self, binary, defaults):
        self.binary = binary
        self.defaults = defaults  # name -> default text ("" when none is shown)

    def has(self, name):
        if name in self.defaults or name in ABSL_USAGE_FLAGS:
            return True
        # absl's --noflag form of a boolean flag.
        return name.startswith("no") and name[2:] in self.defaults

    def default(self, name):
        return self.defaults.get(name, "").strip('"')


def parse_help(text):
    """Flag name -> default text, from absl's --help / --helpfull output."""
    defaults = {}
    blocks = re.split(r"\n(?=\s+--[A-Za-z0-9_]+ \()", "\n" + text)
    for block in blocks:
        match = re.match(r"\s+--([A-Za-z0-9_]+) \(", block)
        if not match:
            continue
        joined = " ".join(block.split())
        default = re.search(r"default: (.*?);(?: |$)", joined)
        defaults[match.group(1)] = default.group(1) if default else ""
    return defaults


def read_flags(binary, path):
    defaults = {}
    for option in ("--help", "--helpfull"):
        result = subprocess.run([path, option], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=TIMEOUT)
        defaults.update(parse_help(result.stdout + result.stderr))
    if not defaults:
        raise SystemExit("FAIL: %s --help / --helpfull list no flags" % path)
    return Flags(binary, defaults)


# ---------------------------------------------------------------------------------------------
# Small parsers


def parse_duration(text):
    """Seconds of an absl duration ("20s", "1m30s", "500ms", "1h") or a systemd time span
    ("30s", "1min 30s", "45"); None when it is neither."""
    text = text.strip().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60,
             "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|sec|min|hr|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return None
    return sum(float(number) * units[unit] for number, unit in parts)


def split_shell(text):
    """Words of a shell command line; ;, &&, || and | are words of their own."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    return list(lexer)


SEPARATORS = {";", "&&", "||", "|", "&", ";;"}


class Invocation:
    """One run of a binary named in a file: where, which binary, its arguments."""

    def __init__(self, where, binary, args):
        self.where = where
        self.binary = binary
        self.args = args
        self.flags = []  # (name, value or None)
        self.positionals = []
        for arg in args:
            if arg == "--":
                break
            if arg.startswith("-") and len(arg) > 1:
                name, equals, value = arg.lstrip("-").partition("=")
                self.flags.append((name, value if equals else None))
            else:
                self.positionals.append(arg)

    def value(self, name):
        found = None
        for flag, value in self.flags:
            if flag == name:
                found = value
        return found


# Words after which the next word is a command.
COMMAND_PREFIXES = {"sudo", "exec", "env", "nohup", "time", "command"}


def in_command_position(words, i):
    """Whether words[i] is run as a command: first, after a separator or a prefix such as sudo,
    after VAR=value, or after an image name:tag (docker run IMAGE COMMAND)."""
    if i == 0:
        return True
    before = words[i - 1]
    return (before in SEPARATORS or before in COMMAND_PREFIXES or
            re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", before) is not None or
            re.fullmatch(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+", before) is not None)


def invocations_in(words, where):
    """The runs of export-server / export-worker in a command given as words; a word that is a
    whole script (sh -c "...") is searched too."""
    found = []
    for i, word in enumerate(words):
        if os.path.basename(word) in BINARIES and in_command_position(words, i):
            args = []
            for arg in words[i + 1:]:
                if arg in SEPARATORS:
                    break
                args.append(arg)
            found.append(Invocation(where, os.path.basename(word), args))
        elif re.search(r"\s", word) and any(b in word for b in BINARIES):
            try:
                found.extend(invocations_in(split_shell(word), where))
            except ValueError as error:
                found.append(Invocation(where, "unparsable: %s" % error, []))
    return found


def probe_targets(text):
    """(port, path) pairs that a health-check command requests: curl/wget URLs or bash's
    /dev/tcp with a GET line."""
    targets = []
    for host_port, path in re.findall(r"https?://([^/\s'\"]+)(/[^\s'\"?]*)", text):
        port = host_port.rpartition(":")[2]
        targets.append((int(port) if port.isdigit() else 80, path))
    tcp = re.search(r"/dev/tcp/[^/\s]+/(\d+)", text)
    get = re.search(r"GET (\S+) HTTP", text)
    if tcp and get:
        targets.append((int(tcp.group(1)), get.group(1)))
    return targets


def address_port(address):
    host, _, port = (address or "").rpartition(":")
    return host, (int(port) if port.isdigit() else None)


# ---------------------------------------------------------------------------------------------
# The files


class Files:
    """deploy/, .dockerignore and docs/deployment.md as text, so checks can run on changed
    copies."""

    def __init__(self, texts):
        self.texts = texts

    @classmethod
    def load(cls, root):
        texts = {}
        for directory, _, names in os.walk(os.path.join(root, "deploy")):
            for name in names:
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                if relative.endswith("signing.key"):
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts[relative] = f.read()
        for relative in (".dockerignore", DOCS):
            path = os.path.join(root, relative)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    texts[relative] = f.read()
        return cls(texts)

    def changed(self, path, old, new, occurrence=0):
        """A copy with the occurrence-th (-1: last) `old` in `path` replaced by `new`."""
        text = self.texts[path]
        starts = [m.start() for m in re.finditer(re.escape(old), text)]
        if not starts:
            raise AssertionError("self-test: %r is not in %s" % (old, path))
        start = starts[occurrence]
        texts = dict(self.texts)
        texts[path] = text[:start] + new + text[start + len(old):]
        return Files(texts)

    def paths(self, prefix="", suffixes=()):
        return sorted(p for p in self.texts
                      if p.startswith(prefix) and (not suffixes or p.endswith(suffixes)))


class Report:
    def __init__(self):
        self.errors = []
        self.notes = []

    def error(self, where, message):
        self.errors.append("%s: %s" % (where, message))

    def note(self, message):
        self.notes.append(message)


def yaml_documents(files, path, report):
    try:
        return [d for d in load_yaml_all(files.texts[path]) if d is not None]
    except yaml.YAMLError as error:
        report.error(path, "does not parse as YAML: %s" % " ".join(str(error).split()))
        return None


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text):
    """(keyword, arguments, line number) of each instruction; continuation lines joined."""
    instructions = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if not stripped and not pending:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip(), start))
        pending = ""
    return instructions


def exec_form(rest):
    """Words of a CMD/ENTRYPOINT/HEALTHCHECK CMD: JSON exec form, or shell form via sh -c."""
    if rest.startswith("["):
        return json.loads(rest)
    return ["/bin/sh", "-c", rest]


def apt_packages(run_text):
    packages = []
    words = split_shell(run_text)
    for i, word in enumerate(words):
        if word == "install" and i > 0 and words[i - 1] in ("apt-get", "apt"):
            for arg in words[i + 1:]:
                if arg in SEPARATORS:
                    break
                if not arg.startswith("-"):
                    packages.append(arg)
    return packages


class Dockerfile:
    def __init__(self, text):
        self.stages = []  # each: {"from": image, "name": name, "instructions": [...]}
        for keyword, rest, line in dockerfile_instructions(text):
            if keyword == "FROM":
                words = rest.split()
                self.stages.append({"from": words[0],
                                    "name": words[2] if len(words) > 2 else "",
                                    "instructions": []})
            elif self.stages:
                self.stages[-1]["instructions"].append((keyword, rest, line))

    def last(self, stage, keyword):
        found = [rest for k, rest, _ in stage["instructions"] if k == keyword]
        return found[-1] if found else None

    def packages(self, stage):
        packages = []
        for keyword, rest, _ in stage["instructions"]:
            if keyword == "RUN":
                packages.extend(apt_packages(rest))
        return packages

    def runtime(self):
        return self.stages[-1] if self.stages else None

    def command(self):
        stage = self.runtime()
        words = []
        for keyword in ("ENTRYPOINT", "CMD"):
            rest = self.last(stage, keyword)
            if rest:
                words.extend(exec_form(rest))
        return words

    def healthcheck(self):
        rest = self.last(self.runtime(), "HEALTHCHECK")
        if rest is None:
            return None
        match = re.search(r"\bCMD\s+(.*)$", rest)
        if not match:
            return []
        return exec_form(match.group(1))


def install_deps_packages(text):
    match = re.search(r"packages=\((.*?)\)", text, re.S)
    if not match:
        return []
    return [w for line in match.group(1).splitlines() for w in line.split("#")[0].split()]


def check_dockerfile(files, report, invocations):
    if DOCKERFILE not in files.texts:
        report.error(DOCKERFILE, "missing")
        return
    docker = Dockerfile(files.texts[DOCKERFILE])
    if len(docker.stages) < 2:
        report.error(DOCKERFILE, "must have a build stage and a runtime stage")
        return
    for stage in docker.stages:
        if not re.fullmatch(r"debian:bookworm(-slim)?", stage["from"]):
            report.error(DOCKERFILE, "stage FROM %s: must be debian:bookworm" % stage["from"])
    runtime = docker.runtime()
    build_names = [s["name"] for s in docker.stages[:-1]]
    copies = [rest for k, rest, _ in runtime["instructions"] if k == "COPY"]
    if not any(re.search(r"--from=(\S+)", c) and re.search(r"--from=(\S+)", c).group(1)
               in build_names for c in copies):
        report.error(DOCKERFILE, "the runtime stage copies nothing from a build stage")

    # The build: Release, tests off, the packages of install-deps.sh (less the test tools).
    build = docker.stages[0]
    build_runs = " ".join(rest for k, rest, _ in build["instructions"] if k == "RUN")
    for needed in ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_TESTING=OFF", "-G Ninja"):
        if needed not in build_runs:
            report.error(DOCKERFILE, "the build stage's cmake lacks %s" % needed)
    for target in BINARIES:
        if not re.search(r"--target [^&;]*\b%s\b" % target, build_runs) and \
                not re.search(r"targets=\"[^\"]*\b%s\b" % target, build_runs):
            report.error(DOCKERFILE, "the build stage does not build %s" % target)
    install_deps = files.texts.get("deploy/install-deps.sh", "")
    build_packages = set(docker.packages(build))
    for package in install_deps_packages(install_deps):
        if package not in build_packages and package not in TEST_ONLY_PACKAGES:
            report.error(DOCKERFILE, "the build stage does not install %s, which "
                         "deploy/install-deps.sh installs" % package)
    if not docker.packages(runtime):
        report.error(DOCKERFILE, "the runtime stage installs no runtime libraries")
    for package in docker.packages(runtime):
        if package.endswith("-dev"):
            report.error(DOCKERFILE, "the runtime stage installs the build package %s" % package)

    user = docker.last(runtime, "USER")
    if user is None or user.split(":")[0] in ("root", "0"):
        report.error(DOCKERFILE, "the runtime stage must run as a non-root USER")
    elif not user.split(":")[0].isdigit():
        report.error(DOCKERFILE, "USER %s: give a numeric uid, so that Kubernetes' "
                     "runAsNonRoot can check it" % user)

    words = docker.command()
    found = invocations_in(words, DOCKERFILE + " CMD")
    invocations.extend(found)
    server = [i for i in found if i.binary == "export-server"]
    if not server:
        report.error(DOCKERFILE, "CMD does not run export-server")
        return
    server = server[0]
    exposed = {int(p.split("/")[0]) for k, rest, _ in runtime["instructions"] if k == "EXPOSE"
               for p in rest.split()}
    for flag in ("grpc_address", "http_address"):
        host, port = address_port(server.value(flag))
        if host not in ("0.0.0.0", "[::]"):
            report.error(DOCKERFILE, "CMD --%s=%s: the server must listen on 0.0.0.0 in a "
                         "container" % (flag, server.value(flag)))
        if port is not None and port not in exposed:
            report.error(DOCKERFILE, "CMD --%s port %d is not EXPOSEd" % (flag, port))
    volumes = set()
    for k, rest, _ in runtime["instructions"]:
        if k == "VOLUME":
            volumes.update(json.loads(rest) if rest.startswith("[") else rest.split())
    if server.value("data_dir") not in volumes:
        report.error(DOCKERFILE, "CMD --data_dir=%s is not a VOLUME" % server.value("data_dir"))
    grace = parse_duration(server.value("shutdown_grace") or "10s")
    if grace is None or grace >= DOCKER_STOP_TIMEOUT:
        report.error(DOCKERFILE, "CMD --shutdown_grace must stay below docker stop's %gs" %
                     DOCKER_STOP_TIMEOUT)
    health = docker.healthcheck()
    if health:
        _, http_port = address_port(server.value("http_address"))
        targets = probe_targets(" ".join(health))
        if not targets:
            report.error(DOCKERFILE, "HEALTHCHECK requests no HTTP path")
        for port, path in targets:
            if port != http_port:
                report.error(DOCKERFILE, "HEALTHCHECK port %d is not the --http_address port %s"
                             % (port, http_port))
            if path not in PROBE_PATHS:
                report.error(DOCKERFILE, "HEALTHCHECK path %s is not one of %s" %
                             (path, ", ".join(PROBE_PATHS)))

    ignore = files.texts.get(".dockerignore")
    if ignore is None:
        report.error(".dockerignore", "missing")
    else:
        lines = {line.strip() for line in ignore.splitlines()}
        for pattern in (".git", "build*/", "data/", "**/node_modules"):
            if pattern not in lines:
                report.error(".dockerignore", "does not leave out %s" % pattern)


# ---------------------------------------------------------------------------------------------
# docker-compose.yml


def compose_words(value):
    if value is None:
        return []
    return split_shell(value) if isinstance(value, str) else [str(v) for v in value]


def check_compose(files, report, invocations):
    if COMPOSE_FILE not in files.texts:
        report.error(COMPOSE_FILE, "missing")
        return
    documents = yaml_documents(files, COMPOSE_FILE, report)
    if not documents:
        return
    compose = documents[0]
    services = compose.get("services") or {}
    declared_volumes = set((compose.get("volumes") or {}).keys())
    declared_secrets = set((compose.get("secrets") or {}).keys())
    runs = {}  # service -> its Invocation
    for name, service in services.items():
        where = "%s services.%s" % (COMPOSE_FILE, name)
        words = compose_words(service.get("entrypoint")) + compose_words(service.get("command"))
        found = invocations_in(words, where + ".command")
        invocations.extend(found)
        if found:
            runs[name] = found[0]
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")) and \
                    source not in declared_volumes:
                report.error(where, "volume %s is not declared under volumes:" % source)
        for secret in service.get("secrets") or []:
            secret = secret if isinstance(secret, str) else secret.get("source")
            if secret not in declared_secrets:
                report.error(where, "secret %s is not declared under secrets:" % secret)

    servers = {n: r for n, r in runs.items() if r.binary == "export-server"}
    workers = {n: r for n, r in runs.items() if r.binary == "export-worker" and
               "seed-demo" not in r.positionals}
    if len(servers) != 1:
        report.error(COMPOSE_FILE, "must have one export-server service, has %d" % len(servers))
        return
    (server_name, server), = servers.items()
    service = services[server_name]
    where = "%s services.%s" % (COMPOSE_FILE, server_name)
    for flag in ("grpc_address", "http_address"):
        host, _ = address_port(server.value(flag))
        if host not in ("0.0.0.0", "[::]"):
            report.error(where, "--%s=%s: the server must listen on 0.0.0.0 in a container" %
                         (flag, server.value(flag)))
    _, grpc_port = address_port(server.value("grpc_address"))
    _, http_port = address_port(server.value("http_address"))
    mounts = {}
    for volume in service.get("volumes") or []:
        parts = volume.split(":")
        if len(parts) >= 2:
            mounts[parts[1]] = parts[0]
    if server.value("data_dir") not in mounts:
        report.error(where, "--data_dir=%s is not a mounted volume" % server.value("data_dir"))
    key = server.value("signing_key_file")
    secrets = [s if isinstance(s, str) else s.get("source") for s in service.get("secrets") or []]
    if not key or not any(key == "/run/secrets/" + s for s in secrets):
        report.error(where, "--signing_key_file=%s is not one of its secrets (/run/secrets/NAME)"
                     % key)
    health = service.get("healthcheck") or {}
    test = health.get("test")
    if not test or health.get("disable"):
        report.error(where, "has no healthcheck")
    else:
        text = test if isinstance(test, str) else " ".join(str(t) for t in test)
        if re.search(r"(?<!\$)\$(?!\$)[A-Za-z_{]", text):
            report.error(where, "healthcheck: a single $ is interpolated by Compose; write $$")
        targets = probe_targets(text)
        if not targets:
            report.error(where, "healthcheck requests no HTTP path")
        for port, path in targets:
            if port != http_port:
                report.error(where, "healthcheck port %d is not the --http_address port %s" %
                             (port, http_port))
            if path not in PROBE_PATHS:
                report.error(where, "healthcheck path %s is not one of %s" %
                             (path, ", ".join(PROBE_PATHS)))
    grace = parse_duration(server.value("shutdown_grace") or "10s")
    stop = parse_duration(str(service.get("stop_grace_period", "10s")))
    if grace is None or stop is None or stop <= grace:
        report.error(where, "stop_grace_period (%s) must exceed --shutdown_grace (%s)" %
                     (service.get("stop_grace_period", "10s"), server.value("shutdown_grace")))

    replicas = sum(int(((services[n].get("deploy") or {}).get("replicas", 1))) for n in workers)
    if replicas < 2:
        report.error(COMPOSE_FILE, "runs %d export-worker(s); two are expected" % replicas)
    seeded = {}  # volume -> path of a seed-demo --source in it
    for name, run in runs.items():
        if "seed-demo" in run.positionals:
            for volume in services[name].get("volumes") or []:
                parts = volume.split(":")
                if run.value("source") and run.value("source").startswith(parts[1] + "/"):
                    seeded[parts[0]] = run.value("source")
    for name, worker in workers.items():
        where = "%s services.%s" % (COMPOSE_FILE, name)
        host, port = address_port(worker.value("server"))
        if host != server_name or port != grpc_port:
            report.error(where, "--server=%s is not %s:%s, the server's gRPC address" %
                         (worker.value("server"), server_name, grpc_port))
        depends = services[name].get("depends_on") or {}
        condition = depends.get(server_name, {}).get("condition") if isinstance(depends, dict) \
            else None
        if condition != "service_healthy":
            report.error(where, "depends_on %s must have condition: service_healthy" %
                         server_name)
        source = worker.value("source") or ""
        volumes = [v.split(":") for v in services[name].get("volumes") or []]
        if not any(source.startswith(v[1] + "/") and seeded.get(v[0]) == source
                   for v in volumes if len(v) >= 2):
            report.error(where, "--source=%s is not in a volume that a seed-demo service fills"
                         % source)
        stop = parse_duration(str(services[name].get("stop_grace_period", "10s")))
        rpc = parse_duration(worker.value("rpc_timeout") or FLAGS["export-worker"].default(
            "rpc_timeout") or "30s")
        if stop is None or rpc is None or stop <= rpc:
            report.error(where, "stop_grace_period must exceed --rpc_timeout (%gs): the worker "
                         "releases its jobs on SIGTERM" % (rpc or 0))


# ---------------------------------------------------------------------------------------------
# Kubernetes


def pod_spec(obj):
    if obj.get("kind") in ("StatefulSet", "Deployment", "DaemonSet", "Job"):
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def check_k8s(files, report, invocations):
    kustomization_path = K8S_DIR + "kustomization.yaml"
    objects = []  # (path, object)
    kustomization = None
    for path in files.paths(K8S_DIR, (".yaml", ".yml")):
        documents = yaml_documents(files, path, report)
        if documents is None:
            continue
        if path == kustomization_path:
            kustomization = documents[0] if documents else {}
            continue
        for obj in documents:
            if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion") \
                    or not (obj.get("metadata") or {}).get("name"):
                report.error(path, "an object without apiVersion, kind or metadata.name")
                continue
            objects.append((path, obj))
    if kustomization is None:
        report.error(kustomization_path, "missing")
        return
    resources = kustomization.get("resources") or []
    for resource in resources:
        if K8S_DIR + resource not in files.texts:
            report.error(kustomization_path, "resource %s does not exist" % resource)
    for path in {p for p, _ in objects}:
        if path[len(K8S_DIR):] not in resources:
            report.error(kustomization_path, "does not list %s" % path[len(K8S_DIR):])

    def of_kind(kind):
        return [(p, o) for p, o in objects if o["kind"] == kind]

    namespaces = of_kind("Namespace")
    if len(namespaces) != 1:
        report.error(K8S_DIR, "one Namespace expected, found %d" % len(namespaces))
    elif kustomization.get("namespace") != namespaces[0][1]["metadata"]["name"]:
        report.error(kustomization_path, "namespace %s is not the Namespace %s" %
                     (kustomization.get("namespace"), namespaces[0][1]["metadata"]["name"]))
    secret_names = {g.get("name"): g for g in kustomization.get("secretGenerator") or []}
    secret_names.update({o["metadata"]["name"]: o for _, o in of_kind("Secret")})
    image_names = {i.get("name") for i in kustomization.get("images") or []}

    workloads = []  # (path, object, container, Invocation or None)
    for path, obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = "%s %s/%s" % (path, obj["kind"], obj["metadata"]["name"])
        selector = ((obj["spec"].get("selector") or {}).get("matchLabels")) or {}
        labels = ((obj["spec"]["template"].get("metadata") or {}).get("labels")) or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            report.error(where, "selector.matchLabels does not match the pod template's labels")
        pod_security = spec.get("securityContext") or {}
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cwhere = "%s container %s" % (where, container.get("name"))
            words = [str(w) for w in (container.get("command") or []) +
                     (container.get("args") or [])]
            found = invocations_in(words, cwhere)
            invocations.extend(found)
            workloads.append((path, obj, container, found[0] if found else None))
            security = container.get("securityContext") or {}
            if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
                report.error(cwhere, "securityContext: runAsNonRoot must be true")
            if security.get("allowPrivilegeEscalation") is not False:
                report.error(cwhere, "securityContext: allowPrivilegeEscalation must be false")
            resources_ = container.get("resources") or {}
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources_.get(kind) or {}):
                        report.error(cwhere, "resources.%s.%s missing" % (kind, resource))
            image = str(container.get("image", "")).split(":")[0]
            if image_names and image not in image_names:
                report.error(cwhere, "image %s is not one of kustomization.yaml's images" %
                             image)
            mounts = {m.get("name") for m in container.get("volumeMounts") or []}
            volumes = {v.get("name") for v in spec.get("volumes") or []}
            volumes |= {(t.get("metadata") or {}).get("name")
                        for t in obj["spec"].get("volumeClaimTemplates") or []}
            for mount in mounts - volumes:
                report.error(cwhere, "volumeMount %s names no volume" % mount)

    servers = [w for w in workloads if w[3] and w[3].binary == "export-server"]
    workers = [w for w in workloads if w[3] and w[3].binary == "export-worker" and
               "seed-demo" not in w[3].positionals]
    services = of_kind("Service")
    if len(servers) != 1 or servers[0][1]["kind"] != "StatefulSet":
        report.error(K8S_DIR, "export-server must run in one StatefulSet")
        return
    path, statefulset, container, server = servers[0]
    where = "%s StatefulSet/%s" % (path, statefulset["metadata"]["name"])
    if statefulset["spec"].get("replicas") != 1:
        report.error(where, "replicas must be 1 (one process opens the database)")
    templates = statefulset["spec"].get("volumeClaimTemplates") or []
    claim_names = {(t.get("metadata") or {}).get("name") for t in templates}
    data_mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") in claim_names]
    if not templates:
        report.error(where, "has no volumeClaimTemplates")
    elif not any(m.get("mountPath") == server.value("data_dir") for m in data_mounts):
        report.error(where, "--data_dir=%s is not the mountPath of a volumeClaimTemplate" %
                     server.value("data_dir"))
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    port_numbers = set(ports.values())
    grpc_host, grpc_port = address_port(server.value("grpc_address"))
    http_host, http_port = address_port(server.value("http_address"))
    for flag, host, port in (("grpc_address", grpc_host, grpc_port),
                             ("http_address", http_host, http_port)):
        if host not in ("0.0.0.0", "[::]"):
            report.error(where, "--%s=%s: the server must listen on 0.0.0.0 in a pod" %
                         (flag, server.value(flag)))
        if port not in port_numbers:
            report.error(where, "--%s port %s is not a containerPort" % (flag, port))

    def port_number(port):
        return ports.get(port) if isinstance(port, str) else port

    probes = {k: container.get(k) for k in ("readinessProbe", "livenessProbe", "startupProbe")}
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for kind, probe in probes.items():
        if probe is None:
            if kind in expected:
                report.error(where, "%s missing" % kind)
            continue
        if "httpGet" in probe:
            number = port_number(probe["httpGet"].get("port"))
            if number != http_port:
                report.error(where, "%s port %s is not the HTTP port (%s)" %
                             (kind, probe["httpGet"].get("port"), http_port))
            path_ = probe["httpGet"].get("path")
            if path_ not in PROBE_PATHS or (kind in expected and path_ != expected[kind]):
                report.error(where, "%s path %s; expected %s" %
                             (kind, path_, expected.get(kind, " or ".join(PROBE_PATHS))))
        elif "grpc" in probe:
            if probe["grpc"].get("port") != grpc_port:
                report.error(where, "%s gRPC port %s is not the gRPC port (%s)" %
                             (kind, probe["grpc"].get("port"), grpc_port))
        else:
            report.error(where, "%s is neither httpGet nor grpc" % kind)
    grace = parse_duration(server.value("shutdown_grace") or "10s")
    period = statefulset["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if grace is None or period <= grace:
        report.error(where, "terminationGracePeriodSeconds (%s) must exceed --shutdown_grace (%s)"
                     % (period, server.value("shutdown_grace")))
    key = server.value("signing_key_file") or ""
    secret_volumes = {v.get("name"): v["secret"].get("secretName")
                      for v in statefulset["spec"]["template"]["spec"].get("volumes") or []
                      if "secret" in v}
    key_ok = False
    for mount in container.get("volumeMounts") or []:
        secret = secret_volumes.get(mount.get("name"))
        if secret and key.startswith(mount.get("mountPath", "").rstrip("/") + "/"):
            generator = secret_names.get(secret)
            file_name = key.rsplit("/", 1)[1]
            if generator is None:
                report.error(where, "Secret %s is neither generated nor defined" % secret)
            elif "files" in generator and not any(
                    f.split("=")[0] == file_name or os.path.basename(f) == file_name
                    for f in generator["files"]):
                report.error(kustomization_path, "secretGenerator %s has no file %s" %
                             (secret, file_name))
            key_ok = True
    if not key_ok:
        report.error(where, "--signing_key_file=%s is not in a mounted Secret" % key)

    # Services: each selects the server's pods and targets its ports; one is headless.
    pod_labels = statefulset["spec"]["template"]["metadata"].get("labels") or {}
    service_ports = {}  # service name -> {port: container port number}
    for spath, service in services:
        swhere = "%s Service/%s" % (spath, service["metadata"]["name"])
        selector = service["spec"].get("selector") or {}
        if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
            report.error(swhere, "selector %s does not select the export-server pods" % selector)
            continue
        mapping = {}
        for port in service["spec"].get("ports") or []:
            target = port_number(port.get("targetPort", port.get("port")))
            if target not in port_numbers:
                report.error(swhere, "port %s targets %s, not a port of the container" %
                             (port.get("name"), port.get("targetPort")))
            mapping[port.get("port")] = target
        service_ports[service["metadata"]["name"]] = mapping
    headless = [s for _, s in services if s["spec"].get("clusterIP") == "None"]
    if statefulset["spec"].get("serviceName") not in [s["metadata"]["name"] for s in headless]:
        report.error(where, "serviceName %s is not a headless Service" %
                     statefulset["spec"].get("serviceName"))
    if not any(s["spec"].get("clusterIP") != "None" for _, s in services):
        report.error(K8S_DIR, "no ClusterIP Service for export-server")

    if not workers or any(w[1]["kind"] != "Deployment" for w in workers):
        report.error(K8S_DIR, "export-worker must run in a Deployment")
    for wpath, deployment, _, worker in workers:
        wwhere = "%s Deployment/%s" % (wpath, deployment["metadata"]["name"])
        if (deployment["spec"].get("replicas") or 1) < 2:
            report.error(wwhere, "replicas must be at least 2")
        host, port = address_port(worker.value("server"))
        service_name = host.split(".")[0]
        if service_name not in service_ports:
            report.error(wwhere, "--server=%s: %s is not a Service of export-server" %
                         (worker.value("server"), service_name))
        elif service_ports[service_name].get(port) != grpc_port:
            report.error(wwhere, "--server=%s: port %s of Service %s is not the gRPC port" %
                         (worker.value("server"), port, service_name))
        rpc = parse_duration(worker.value("rpc_timeout") or FLAGS["export-worker"].default(
            "rpc_timeout") or "30s")
        period = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        if rpc is None or period <= rpc:
            report.error(wwhere, "terminationGracePeriodSeconds (%s) must exceed --rpc_timeout "
                         "(%gs): the worker releases its jobs on SIGTERM" % (period, rpc or 0))


# ---------------------------------------------------------------------------------------------
# systemd


def parse_unit(text):
    """{section: [(key, value)]}; continuation lines joined, comments dropped."""
    sections, section, pending = {}, None, ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped[0] in "#;"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        stripped, pending = pending + stripped, ""
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            sections.setdefault(section, [])
        elif "=" in stripped and section is not None:
            key, _, value = stripped.partition("=")
            sections[section].append((key.strip(), value.strip()))
    return sections


def unit_values(unit, key, section="Service"):
    return [v for k, v in unit.get(section, []) if k == key]


def unit_command(value):
    return split_shell(value.lstrip("-@:+!|"))


def check_systemd(files, report, invocations):
    units = files.paths(SYSTEMD_DIR, (".service",))
    if not units:
        report.error(SYSTEMD_DIR, "no units")
    seen = set()
    for path in units:
        unit = parse_unit(files.texts[path])
        name = path[len(SYSTEMD_DIR):]
        starts = unit_values(unit, "ExecStart")
        if len(starts) != 1:
            report.error(path, "needs exactly one ExecStart=")
            continue
        words = unit_command(starts[0])
        found = invocations_in(words, path + " ExecStart")
        invocations.extend(found)
        if not found or found[0].binary not in BINARIES:
            report.error(path, "ExecStart= runs neither export-server nor export-worker")
            continue
        run = found[0]
        seen.add(run.binary)
        if not words[0].startswith("/"):
            report.error(path, "ExecStart= needs an absolute path")
        environment = {}
        for value in unit_values(unit, "Environment"):
            for assignment in split_shell(value):
                key, _, default = assignment.partition("=")
                environment[key] = default
        for variable in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", starts[0]):
            if variable not in environment:
                report.error(path, "ExecStart= uses ${%s}, which no Environment= line sets "
                             "(the unit must work without its environment file)" % variable)
        for env_file in unit_values(unit, "EnvironmentFile"):
            base = os.path.basename(env_file.lstrip("-"))
            if "%" not in base and SYSTEMD_DIR + base not in files.texts:
                report.error(path, "EnvironmentFile=%s has no example %s%s" %
                             (env_file, SYSTEMD_DIR, base))
        for key, expected in (("Restart", "on-failure"), ("KillSignal", "SIGTERM"),
                              ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes")):
            if unit_values(unit, key) != [expected]:
                report.error(path, "%s= must be %s" % (key, expected))
        users = unit_values(unit, "User")
        if unit_values(unit, "DynamicUser") != ["yes"] and (not users or users[-1] in
                                                           ("root", "0")):
            report.error(path, "runs as root: set DynamicUser=yes or User=")
        stop_values = unit_values(unit, "TimeoutStopSec")
        stop = parse_duration(stop_values[-1]) if stop_values else 90.0
        if run.binary == "export-server":
            grace = parse_duration(run.value("shutdown_grace") or
                                   FLAGS["export-server"].default("shutdown_grace") or "10s")
            if stop is None or grace is None or stop <= grace:
                report.error(path, "TimeoutStopSec (%s) must exceed --shutdown_grace (%s)" %
                             (stop_values, run.value("shutdown_grace")))
            state = unit_values(unit, "StateDirectory")
            if not state or run.value("data_dir") != "/var/lib/" + state[-1].split()[0]:
                report.error(path, "--data_dir=%s is not /var/lib/ + StateDirectory= (%s)" %
                             (run.value("data_dir"), state))
            key = run.value("signing_key_file") or ""
            if key.startswith("%d/"):
                credentials = [c.split(":")[0] for c in unit_values(unit, "LoadCredential")]
                if key[3:] not in credentials:
                    report.error(path, "--signing_key_file=%s: no LoadCredential=%s:" %
                                 (key, key[3:]))
        else:
            rpc = parse_duration(run.value("rpc_timeout") or
                                 FLAGS["export-worker"].default("rpc_timeout") or "30s")
            if stop is None or rpc is None or stop <= rpc:
                report.error(path, "TimeoutStopSec must exceed --rpc_timeout (%gs): the worker "
                             "releases its jobs on SIGTERM" % (rpc or 0))
            if "@" not in name or "%i" not in starts[0]:
                report.error(path, "the worker unit must be a template (NAME@.service) that "
                             "uses %i")
    for binary in BINARIES:
        if units and binary not in seen:
            report.error(SYSTEMD_DIR, "no unit runs %s" % binary)


# ---------------------------------------------------------------------------------------------
# docs/deployment.md


def check_docs(files, report, invocations):
    text = files.texts.get(DOCS)
    if text is None:
        report.error(DOCS, "missing")
        return
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
            if not any(b in line for b in BINARIES):
                continue
            try:
                words = split_shell(line)
            except ValueError:
                continue
            invocations.extend(invocations_in(words, "%s `%s`" % (DOCS, line.strip())))


# ---------------------------------------------------------------------------------------------
# The checks


def check_flags(invocations, report):
    for run in invocations:
        if run.binary not in BINARIES:
            report.error(run.where, run.binary)
            continue
        flags = FLAGS[run.binary]
        for name, _ in run.flags:
            if not flags.has(name):
                report.error(run.where, "--%s is not a flag of %s (--help/--helpfull)" %
                             (name, run.binary))
        allowed = SUBCOMMANDS[run.binary]
        extra = [p for i, p in enumerate(run.positionals) if i > 0 or p not in allowed]
        if extra:
            report.error(run.where, "%s takes no argument %s (write flags as --name=value)" %
                         (run.binary, " ".join(extra)))


def check_files(files):
    report = Report()
    for path in files.paths("deploy/", (".yaml", ".yml")):
        yaml_documents(files, path, report)
    invocations = []
    check_dockerfile(files, report, invocations)
    check_compose(files, report, invocations)
    check_k8s(files, report, invocations)
    check_systemd(files, report, invocations)
    check_docs(files, report, invocations)
    check_flags(invocations, report)
    report.note("%d runs of the binaries checked" % len(invocations))
    return report


def env_contexts(files):
    """(where, binaries, text): EXPORTD_* names in text must be flags of one of binaries."""
    both = BINARIES
    contexts = []
    for path, text in sorted(files.texts.items()):
        contexts.append((path, both, text))
    for path in files.paths(SYSTEMD_DIR):
        name = path[len(SYSTEMD_DIR):]
        binary = [b for b in BINARIES if name.startswith(b)]
        if path.endswith(".service"):
            unit = parse_unit(files.texts[path])
            starts = unit_values(unit, "ExecStart")
            found = invocations_in(unit_command(starts[0]), path) if starts else []
            binary = [found[0].binary] if found and found[0].binary in BINARIES else binary
        if binary:
            contexts.append((path, tuple(binary), files.texts[path]))
    if COMPOSE_FILE in files.texts:
        try:
            compose = load_yaml(files.texts[COMPOSE_FILE]) or {}
        except yaml.YAMLError:
            compose = {}
        for name, service in (compose.get("services") or {}).items():
            words = compose_words(service.get("entrypoint")) + compose_words(service.get("command"))
            found = [i.binary for i in invocations_in(words, name) if i.binary in BINARIES]
            if found:
                contexts.append(("%s services.%s" % (COMPOSE_FILE, name), tuple(found[:1]),
                                 yaml.safe_dump(service)))
    for path in files.paths(K8S_DIR, (".yaml", ".yml")):
        try:
            documents = list(load_yaml_all(files.texts[path]))
        except yaml.YAMLError:
            continue
        for obj in documents:
            spec = pod_spec(obj) if isinstance(obj, dict) else None
            for container in (spec or {}).get("initContainers", []) + \
                    (spec or {}).get("containers", []):
                words = [str(w) for w in (container.get("command") or []) +
                         (container.get("args") or [])]
                found = [i.binary for i in invocations_in(words, path) if i.binary in BINARIES]
                if found:
                    contexts.append(("%s container %s" % (path, container.get("name")),
                                     tuple(found[:1]), yaml.safe_dump(container)))
    return contexts


def check_env(files):
    report = Report()
    count = 0
    for where, binaries, text in env_contexts(files):
        for variable in sorted(set(ENV_NAME.findall(text))):
            count += 1
            flag = variable[len("EXPORTD_"):].lower()
            if not any(FLAGS[b].has(flag) and flag not in ABSL_USAGE_FLAGS for b in binaries):
                report.error(where, "%s: %s has no flag --%s (EXPORTD_<FLAG_NAME> names a flag "
                             "in upper case)" % (variable, " or ".join(binaries), flag))
    report.note("%d uses of EXPORTD_* variables checked" % count)
    return report


def run_quiet(args):
    try:
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess(args, 127, "", str(error))


def candidate_paths(path):
    """The names dpkg may know a library file by (with and without /usr, links resolved)."""
    real = os.path.realpath(path)
    candidates = [path, real]
    candidates += [p[len("/usr"):] for p in (path, real) if p.startswith("/usr/")]
    return candidates


def owner_packages(paths):
    """Library file -> the Debian package that holds it (absent when none does); one dpkg -S."""
    candidates = sorted({c for p in paths for c in candidate_paths(p)})
    owners = {}
    for line in run_quiet(["dpkg", "-S"] + candidates).stdout.splitlines():
        packages, _, path = line.partition(": ")
        if not line.startswith("diversion") and path:
            owners[path.strip()] = packages.split(",")[0].split(":")[0].strip()
    result = {}
    for path in paths:
        for candidate in candidate_paths(path):
            if candidate in owners:
                result[path] = owners[candidate]
                break
    return result


_LINKED = {}


def linked_libraries(path):
    """[(library, resolved path or None)] of the libraries a binary links directly."""
    if path not in _LINKED:
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            run_quiet(["readelf", "-d", path]).stdout)
        resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", run_quiet(["ldd", path]).stdout,
                                   re.M))
        libraries = [(library, resolved.get(library)) for library in needed]
        owners = owner_packages([p for _, p in libraries if p])
        _LINKED[path] = [(library, p, owners.get(p)) for library, p in libraries]
    return _LINKED[path]


_POLICY = {}


def debian_packages(names):
    """Package name -> whether apt-cache has a candidate version of it."""
    if names not in _POLICY:
        known = {}
        policy = run_quiet(["apt-cache", "policy"] + list(names))
        for block in re.split(r"\n(?=\S)", policy.stdout):
            match = re.match(r"(\S+):\n", block + "\n")
            candidate = re.search(r"Candidate: (\S+)", block)
            if match and candidate:
                known[match.group(1)] = candidate.group(1) != "(none)"
        _POLICY[names] = known
    return _POLICY[names]


def check_libraries(files, binaries):
    """(report, skipped reason or None)."""
    report = Report()
    for tool in ("readelf", "ldd", "dpkg"):
        if shutil.which(tool) is None:
            return report, "%s is not installed" % tool
    docker = Dockerfile(files.texts[DOCKERFILE])
    runtime = set(docker.packages(docker.runtime()))
    needed_by = {}  # package -> binaries
    for binary, path in binaries.items():
        for library, resolved, package in linked_libraries(path):
            if resolved is None:
                report.error(binary, "ldd does not resolve %s" % library)
                continue
            if package is None:
                report.error(binary, "%s (%s) belongs to no Debian package" %
                             (library, resolved))
                continue
            needed_by.setdefault(package, set()).add(binary)
            if package not in runtime and package not in BASE_IMAGE_PACKAGES:
                report.error(DOCKERFILE, "the runtime stage lacks %s, which holds %s (linked by "
                             "%s)" % (package, library, binary))
    unused = sorted(runtime - set(needed_by))
    if unused:
        report.note("runtime packages that the binaries built here do not link (yet): %s" %
                    ", ".join(unused))
    # Every package name of the Dockerfile exists in Debian's lists (apt-cache policy).
    names = sorted(set(docker.packages(docker.stages[0])) | runtime)
    known = debian_packages(tuple(names + ["libc6"]))
    if not known.get("libc6"):
        report.note("apt-cache knows no packages (run apt-get update): package names not "
                    "checked")
    else:
        for name in names:
            if not known.get(name):
                report.error(DOCKERFILE, "no Debian package %s (apt-cache policy)" % name)
    report.note("linked packages: %s" % ", ".join(
        "%s (%s)" % (p, "+".join(sorted(b))) for p, b in sorted(needed_by.items())))
    return report, None


# --- probes against a real server ------------------------------------------------------------


class Server:
    """A real export-server on loopback ports 0; its stdout is read by a thread."""

    def __init__(self, path, data_dir):
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self.proc = subprocess.Popen(
            # Probe paths need no token; the server refuses to start without a tokens file
            # unless told so.
            prefix + [path, "--data_dir=" + data_dir, "--grpc_address=127.0.0.1:0",
                      "--http_address=127.0.0.1:0", "--insecure_no_auth"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr.append),
                         daemon=True).start()

    @staticmethod
    def _drain(stream, sink):
        for raw in stream:
            sink(raw.decode(errors="replace").rstrip("\n"))
        sink(None)

    def wait_listening(self):
        """The HTTP address once the server prints its gRPC line; None if it exits first."""
        http = None
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith("http listening on "):
                http = line[len("http listening on "):]
            if line.startswith("grpc listening on "):
                return http

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def probe_commands(files):
    """(where, shell words) of the health-check commands of the Dockerfile and Compose file."""
    commands = []
    if DOCKERFILE in files.texts:
        health = Dockerfile(files.texts[DOCKERFILE]).healthcheck()
        if health:
            commands.append((DOCKERFILE + " HEALTHCHECK", health))
    if COMPOSE_FILE in files.texts:
        compose = load_yaml(files.texts[COMPOSE_FILE]) or {}
        for name, service in (compose.get("services") or {}).items():
            health = service.get("healthcheck") or {}
            test = health.get("test")
            if test and not health.get("disable"):
                words = ["/bin/sh", "-c", test] if isinstance(test, str) else \
                    [str(t).replace("$$", "$") for t in test]
                if words[0] in ("CMD", "CMD-SHELL"):
                    words = words[1:] if words[0] == "CMD" else ["/bin/sh", "-c", words[1]]
                commands.append(("%s services.%s healthcheck" % (COMPOSE_FILE, name), words))
    return commands


def probe_paths(files):
    paths = {p: ["the HTTP port's probe endpoints"] for p in PROBE_PATHS}
    for path in files.paths(K8S_DIR, (".yaml", ".yml")):
        for obj in load_yaml_all(files.texts[path]):
            spec = pod_spec(obj) if isinstance(obj, dict) else None
            for container in (spec or {}).get("containers", []):
                for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                    get = (container.get(kind) or {}).get("httpGet")
                    if get:
                        paths.setdefault(get.get("path"), []).append("%s %s" % (path, kind))
    for where, words in probe_commands(files):
        for _, path in probe_targets(" ".join(words)):
            paths.setdefault(path, []).append(where)
    return paths


def check_probes(files, server_path):
    report = Report()
    with tempfile.TemporaryDirectory(prefix="exportd-deploy-test-") as data_dir:
        server = Server(server_path, data_dir)
        try:
            http = server.wait_listening()
            if http is None:
                report.error(server_path, "did not start: %s" % " | ".join(
                    s for s in server.stderr if s))
                return report
            _, port = address_port(http)
            for path, users in sorted(probe_paths(files).items()):
                try:
                    with urllib.request.urlopen("http://%s%s" % (http, path),
                                                timeout=TIMEOUT) as response:
                        status = response.status
                except urllib.error.HTTPError as error:
                    status = error.code
                except (urllib.error.URLError, OSError) as error:
                    status = str(error)
                if status != 200:
                    report.error("GET %s" % path, "answered %s, not 200 (used by %s)" %
                                 (status, "; ".join(users)))
                else:
                    report.note("GET %s: 200" % path)
            for where, words in probe_commands(files):
                # The command as written, aimed at this server's port.
                words = [re.sub(r"(/dev/tcp/[^/\s]+/|https?://[^/\s:]+:)\d+", r"\g<1>%d" % port,
                                w) for w in words]
                try:
                    result = subprocess.run(words, stdin=subprocess.DEVNULL, capture_output=True,
                                            text=True, timeout=TIMEOUT)
                    if result.returncode != 0:
                        report.error(where, "exited %d against a ready server: %s" %
                                     (result.returncode, result.stderr.strip()))
                    else:
                        report.note("%s: exit 0" % where)
                except (OSError, subprocess.TimeoutExpired) as error:
                    report.error(where, "could not run: %s" % error)
        finally:
            code = server.stop()
        if code != 0:
            report.error(server_path, "exited %s after SIGTERM, not 0" % code)
    return report


def check_systemd_verify(files, binaries):
    """(report, skipped reason or None)."""
    report = Report()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return report, "systemd-analyze is not installed"
    with tempfile.TemporaryDirectory(prefix="exportd-deploy-units-") as directory:
        units = []
        for path in files.paths(SYSTEMD_DIR, (".service",)):
            text = files.texts[path]
            # The binaries of this build stand in for /usr/local/bin's (verify runs them).
            for binary, binary_path in binaries.items():
                text = re.sub(r"(?m)^(ExecStart=[-@:+!|]*)\S*/%s\b" % re.escape(binary),
                              lambda m: m.group(1) + os.path.abspath(binary_path), text)
            name = os.path.basename(path).replace("@.service", "@1.service")
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
            units.append(os.path.join(directory, name))
        probe = run_quiet([analyze, "verify", "--man=no", "--help"])
        man = ["--man=no"] if probe.returncode == 0 else []
        result = run_quiet([analyze, "verify"] + man + units)
        output = (result.stdout + result.stderr).strip()
        ours = [line for line in output.splitlines()
                if directory in line or any(os.path.basename(u) in line for u in units)]
        if result.returncode != 0 and not ours and \
                re.search(r"System has not been booted|Failed to (initialize|setup|connect)",
                          output):
            return report, "systemd-analyze verify does not work here: %s" % output[:300]
        for line in ours:
            report.error("systemd-analyze verify", line.replace(directory + "/", ""))
        if result.returncode != 0 and not ours:
            report.error("systemd-analyze verify", "exit %d: %s" % (result.returncode, output))
        report.note("systemd-analyze verify: %d units, %s" %
                    (len(units), "clean" if not output else "output:\n" + output))
    return report, None


# --- self-test ------------------------------------------------------------------------------

SERVER_SET = K8S_DIR + "server-statefulset.yaml"
SERVICES = K8S_DIR + "server-services.yaml"
WORKER_UNIT = SYSTEMD_DIR + "export-worker@.service"
SERVER_UNIT = SYSTEMD_DIR + "export-server.service"
SERVER_ENV = SYSTEMD_DIR + "export-server.env"

# (what, check, file, old text, new text, occurrence, text that a new error must contain)
MUTATIONS = [
    ("an unknown flag in the StatefulSet's args", "files", SERVER_SET,
     "- --shutdown_grace=20s", "- --shutdown_grace=20s\n            - --no_such_flag=1", 0,
     "--no_such_flag is not a flag of export-server"),
    ("an unknown flag in a systemd ExecStart=", "files", WORKER_UNIT,
     "--concurrency=${EXPORTD_CONCURRENCY}", "--concurrency=${EXPORTD_CONCURRENCY} --bogus", 0,
     "--bogus is not a flag of export-worker"),
    ("a misspelt flag in a Compose command", "files", COMPOSE_FILE,
     "- --concurrency=2", "- --concurency=2", 0, "--concurency is not a flag"),
    ("a dash for an underscore in the Dockerfile CMD", "files", DOCKERFILE,
     '"--shutdown_grace=8s"', '"--shutdown-grace=8s"', 0, "--shutdown-grace is not a flag"),
    ("a flag value as a separate word", "files", SERVER_SET,
     "- --data_dir=/var/lib/exportd", "- --data_dir\n            - /var/lib/exportd", 0,
     "takes no argument /var/lib/exportd"),
    ("a server flag given to the worker", "files", WORKER_UNIT,
     "--concurrency=${EXPORTD_CONCURRENCY}", "--concurrency=${EXPORTD_CONCURRENCY} --data_dir=x",
     0, "--data_dir is not a flag of export-worker"),
    ("a YAML syntax error", "files", COMPOSE_FILE, "services:", "services: [", 0,
     "does not parse as YAML"),
    ("a readiness probe on a port the container lacks", "files", SERVER_SET,
     "path: /readyz\n              port: http", "path: /readyz\n              port: 9090", 0,
     "readinessProbe port 9090"),
    ("a readiness probe on a missing path", "files", SERVER_SET, "path: /readyz",
     "path: /ready", 0, "readinessProbe path /ready"),
    ("a Service that selects no pod", "files", SERVICES, "component: server\n  ports",
     "component: servr\n  ports", -1, "does not select the export-server pods"),
    ("a Service port aimed at a missing container port", "files", SERVICES,
     "targetPort: grpc", "targetPort: grpcx", 0, "targets grpcx"),
    ("a container port that differs from --http_address", "files", SERVER_SET,
     "containerPort: 8080", "containerPort: 8081", 0, "--http_address port 8080"),
    ("workers pointed at a missing Service", "files", K8S_DIR + "worker-deployment.yaml",
     "--server=export-server:50051", "--server=exportserver:50051", 0,
     "exportserver is not a Service"),
    ("a Compose worker on the wrong port", "files", COMPOSE_FILE,
     "--server=export-server:50051", "--server=export-server:50052", 0,
     "--server=export-server:50052 is not"),
    ("a server listening on loopback in Compose", "files", COMPOSE_FILE,
     "--grpc_address=0.0.0.0:50051", "--grpc_address=127.0.0.1:50051", 0,
     "must listen on 0.0.0.0"),
    ("a Compose healthcheck with an interpolated $", "files", COMPOSE_FILE,
     '"$$code"', '"$code"', 0, "single $"),
    ("a Kubernetes grace period shorter than --shutdown_grace", "files", SERVER_SET,
     "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 15", 0,
     "terminationGracePeriodSeconds (15)"),
    ("a systemd stop timeout shorter than --shutdown_grace", "files", SERVER_UNIT,
     "TimeoutStopSec=30s", "TimeoutStopSec=15s", 0, "must exceed --shutdown_grace"),
    ("an ExecStart= variable without a default", "files", SERVER_UNIT,
     "Environment=EXPORTD_HTTP_ADDRESS=127.0.0.1:8080\n", "", 0,
     "uses ${EXPORTD_HTTP_ADDRESS}"),
    ("a build package of install-deps.sh missing from the Dockerfile", "files",
     "deploy/install-deps.sh", "libsqlite3-dev", "libsqlite3-dev libfoo-dev", 0,
     "does not install libfoo-dev"),
    ("a signing key outside the mounted Secret", "files", SERVER_SET,
     "--signing_key_file=/etc/exportd/signing-key/signing.key",
     "--signing_key_file=/etc/exportd/signing.key", 0, "is not in a mounted Secret"),
    ("an unknown flag in a command of docs/deployment.md", "files", DOCS,
     "--accounts=100000", "--acounts=100000", 0, "--acounts is not a flag of export-worker"),
    ("an env variable that names no flag", "env", SERVER_ENV, "#EXPORTD_READ_THREADS=4",
     "EXPORTD_READ_THREAD=4", 0, "EXPORTD_READ_THREAD: export-server has no flag"),
    ("a worker's env variable in the server's env file", "env", SERVER_ENV,
     "#EXPORTD_READ_THREADS=4", "EXPORTD_SOURCE=/x.db", 0,
     "EXPORTD_SOURCE: export-server has no flag --source"),
    ("an env variable in a Compose command that names no flag", "env", COMPOSE_FILE,
     "${EXPORTD_PUBLIC_URL:-", "${EXPORTD_PUBLIC_ADDRESS:-", 0,
     "EXPORTD_PUBLIC_ADDRESS"),
    ("a runtime library missing from the image", "libraries", DOCKERFILE,
     " libsqlite3-0 ", " ", 0, "lacks libsqlite3-0"),
    ("a misspelt runtime package", "libraries", DOCKERFILE,
     " libsqlite3-0 ", " libsqlite3-0 libsqllite3-0 ", 0, "no Debian package libsqllite3-0"),
]


def run_check(check, files, binaries):
    if check == "files":
        return check_files(files), None
    if check == "env":
        return check_env(files), None
    if check == "libraries":
        return check_libraries(files, binaries)
    raise AssertionError(check)


def self_test(files, binaries):
    report = Report()
    baseline = {}
    for what, check, path, old, new, occurrence, expected in MUTATIONS:
        if check not in baseline:
            baseline[check] = run_check(check, files, binaries)
        base_report, skipped = baseline[check]
        if skipped:
            report.note("skipped (%s): %s" % (skipped, what))
            continue
        if check == "libraries" and "no Debian package" in expected and \
                any("package names not checked" in n for n in base_report.notes):
            report.note("skipped (apt-cache knows no packages): %s" % what)
            continue
        try:
            changed = files.changed(path, old, new, occurrence)
        except AssertionError as error:
            report.error("self-test", str(error))
            continue
        after, _ = run_check(check, changed, binaries)
        new_errors = [e for e in after.errors if e not in base_report.errors]
        if any(expected in e for e in new_errors):
            report.note("caught: %s" % what)
        else:
            report.error("self-test", "%s (%s) was not caught: expected an error with %r, new "
                         "errors: %s" % (what, path, expected, new_errors or "none"))
    # And the probe check fails against a path the server does not serve.
    changed = files.changed(SERVER_SET, "path: /healthz", "path: /no-such-path", -1)
    after = check_probes(changed, binaries["export-server"])
    if any("GET /no-such-path" in e for e in after.errors):
        report.note("caught: a liveness probe on a path the server does not serve")
    else:
        report.error("self-test", "a probe on /no-such-path was not caught: %s" % after.errors)
    return report


# ---------------------------------------------------------------------------------------------


FLAGS = {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source_dir", required=True)
    parser.add_argument("--export_server", required=True)
    parser.add_argument("--export_worker", required=True)
    parser.add_argument("--exportctl", default="",
                        help="exportctl, where the tree builds it (the image copies it too)")
    parser.add_argument("check", choices=["files", "env", "libraries", "probes",
                                          "systemd-verify", "self-test"])
    args = parser.parse_args()
    binaries = {"export-server": args.export_server, "export-worker": args.export_worker}
    for binary, path in binaries.items():
        FLAGS[binary] = read_flags(binary, path)
    files = Files.load(args.source_dir)
    # The image ships exportctl as well when the tree builds it: its libraries count too.
    linked = dict(binaries)
    if args.exportctl:
        linked["exportctl"] = args.exportctl

    skipped = None
    if args.check in ("files", "env", "libraries"):
        report, skipped = run_check(args.check, files, linked)
    elif args.check == "probes":
        report = check_probes(files, args.export_server)
    elif args.check == "systemd-verify":
        report, skipped = check_systemd_verify(files, binaries)
    else:
        report = self_test(files, linked)

    for note in report.notes:
        print("note: " + note)
    if skipped:
        print("SKIPPED: %s" % skipped)
        return SKIP
    for error in report.errors:
        print("FAIL " + error)
    if report.errors:
        print("%s: %d problem(s)" % (args.check, len(report.errors)))
        return 1
    print("%s: OK" % args.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
