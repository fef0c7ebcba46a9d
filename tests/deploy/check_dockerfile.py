#!/usr/bin/python3
"""Checks the Dockerfile against what CI builds, without a Docker daemon or an image registry.

usage: check_dockerfile.py SOURCE_DIR BUILD_DIR

- the build stage runs scripts/install-deps.sh and `make build`, and `make test` (what .ci/run
  calls) runs those same two, so CI exercises the image's build commands;
- a LIBTORCH_URL build argument selects another LibTorch, and the Makefile passes CMAKE_ARGS on;
- every COPY source exists, and the binaries it copies are the ones the build makes;
- the runtime stage installs Debian packages that exist, and every shared library the binaries
  need directly comes from one of them, from their direct dependencies, or from the base image.
"""

import os
import re
import subprocess
import sys

FAILURES = []
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}


def fail(message):
    FAILURES.append(message)


def instructions(text):
    """(instruction, argument) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [tuple(l.strip().split(None, 1)) for l in text.splitlines() if l.strip()]


def makefile_recipes(path):
    recipes, target = {}, None
    for line in open(path):
        m = re.match(r"^([a-z]+):(.*)$", line)
        if m:
            target = m.group(1)
            recipes[target] = {"deps": m.group(2).split(), "commands": []}
        elif line.startswith("\t") and target:
            recipes[target]["commands"].append(line.strip())
    return recipes


LDCONFIG = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout


def owners(libraries):
    """The Debian package that ships each of `libraries` (None where no package does), in one dpkg
    call: dpkg knows a file by the path it installed, which after the /usr merge may be the /lib or
    the /usr/lib one."""
    candidates = {}
    for library in libraries:
        m = re.search(rf"\s{re.escape(library)} \(.*\) => (\S+)", LDCONFIG)
        if m:
            real = os.path.realpath(m.group(1))
            candidates[library] = [m.group(1), real, real.replace("/usr/lib/", "/lib/", 1)]
    paths = sorted({path for c in candidates.values() for path in c})
    found = {}
    if paths:
        run = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True)
        for line in run.stdout.splitlines():
            package, _, path = line.partition(": ")
            found[path.strip()] = package.split(":")[0]
    return {library: next((found[p] for p in candidates.get(library, []) if p in found), None)
            for library in libraries}


def known(packages):
    """Those of `packages` in Debian's index; one apt-cache call, which takes a second whatever the count."""
    run = subprocess.run(["apt-cache", "show", *packages], capture_output=True, text=True)
    return {l.split(":", 1)[1].strip() for l in run.stdout.splitlines() if l.startswith("Package:")}


def depends(packages):
    """What `packages` depend on, directly; one apt-cache call for them all."""
    run = subprocess.run(["apt-cache", "depends", *packages], capture_output=True, text=True)
    return {l.split(":", 1)[1].strip().strip("<>") for l in run.stdout.splitlines() if l.strip().startswith("Depends:")}


def main():
    root, build_dir = sys.argv[1], sys.argv[2]
    steps = instructions(open(os.path.join(root, "Dockerfile")).read())
    stages, current = [], None
    for op, arg in steps:
        if op == "FROM":
            current = {"from": arg, "steps": []}
            stages.append(current)
        elif current is not None:
            current["steps"].append((op, arg))
    print(f"check: static (no image registry here to pull {stages[0]['from'] if stages else '?'}): "
          f"{len(stages)} stages against the Makefile, the build directory and Debian's package index")
    if len(stages) != 2 or not stages[0]["from"].endswith(" AS build"):
        fail("expected two stages, the first named build")
        return report()
    build_runs = " ".join(a for op, a in stages[0]["steps"] if op == "RUN")
    for command in ("scripts/install-deps.sh", "make build"):
        if command not in build_runs:
            fail(f"the build stage does not run {command}")
    if not any(op == "ARG" and a.startswith("LIBTORCH_URL") for op, a in stages[0]["steps"]):
        fail("no LIBTORCH_URL build argument")
    recipes = makefile_recipes(os.path.join(root, "Makefile"))
    if "build" not in recipes.get("test", {}).get("deps", []):
        fail("make test does not build through make build")
    if "deps" not in recipes.get("build", {}).get("deps", []) or not any(
            "scripts/install-deps.sh" in c for c in recipes.get("deps", {}).get("commands", [])):
        fail("make build does not run scripts/install-deps.sh")
    if not any("$(CMAKE_ARGS)" in c for c in recipes.get("build", {}).get("commands", [])):
        fail("make build does not pass CMAKE_ARGS to CMake")
    for stage in stages:
        for op, arg in stage["steps"]:
            if op == "COPY" and not arg.startswith("--from"):
                for source in arg.split()[:-1]:
                    if not os.path.exists(os.path.join(root, source)):
                        fail(f"COPY {source}: no such file")
    binaries = re.findall(r"build/[a-z]+/shears[a-z-]*", build_runs)
    if sorted(os.path.basename(b) for b in binaries) != ["shears-server", "shears-worker", "shearsctl"]:
        fail(f"the image gets {binaries}, not shears-server, shears-worker and shearsctl")
    runtime = " ".join(a for op, a in stages[1]["steps"] if op == "RUN")
    packages = set(re.findall(r"\b(lib[a-z0-9.+-]+|ca-certificates)\b", runtime.split("install", 1)[-1]))
    allowed = set(BASE_IMAGE_PACKAGES) | packages
    indexed = known(sorted(packages)) if packages else set()
    for p in sorted(packages - indexed):
        fail(f"runtime package {p} is not in Debian's index")
    if packages:
        allowed |= depends(sorted(packages))
    needed = {}
    for binary in binaries:
        path = os.path.join(build_dir, binary[len("build/"):])
        if not os.path.exists(path):
            fail(f"{path} was not built")
            continue
        needed[path] = re.findall(r"\(NEEDED\).*\[(.*)\]", subprocess.run(["readelf", "-d", path],
                                                                         capture_output=True, text=True).stdout)
    package_of = owners(sorted({library for libraries in needed.values() for library in libraries}))
    for path, libraries in needed.items():
        for library in libraries:
            package = package_of[library]
            if package not in allowed:
                fail(f"{os.path.basename(path)} needs {library} from {package}, which the runtime stage does not install")
        print(f"  {os.path.basename(path)}: {len(libraries)} libraries, each from the runtime packages or the base image")
    cmd = next((a for op, a in reversed(stages[1]["steps"]) if op == "CMD"), "")
    if not any(os.path.basename(b) in cmd for b in binaries):
        fail(f"CMD {cmd} runs none of the copied binaries")
    return report()


def report():
    for f in FAILURES:
        print("FAIL", f)
    print("Dockerfile:", "FAILED" if FAILURES else "consistent with CI's build and the runtime libraries")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
