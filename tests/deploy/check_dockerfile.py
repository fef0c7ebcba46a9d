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

import functools
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


@functools.lru_cache(maxsize=None)
def owner(library):
    """The Debian package that ships `library`; dpkg knows a file by the path it installed, which
    after the /usr merge may be the /lib or the /usr/lib one."""
    m = re.search(rf"\s{re.escape(library)} \(.*\) => (\S+)", LDCONFIG)
    if not m:
        return None
    real = os.path.realpath(m.group(1))
    for path in {m.group(1), real, real.replace("/usr/lib/", "/lib/", 1)}:
        run = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if run.returncode == 0:
            return run.stdout.split(":")[0]
    return None


def depends(package):
    run = subprocess.run(["apt-cache", "depends", package], capture_output=True, text=True)
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
    for p in sorted(packages):
        if subprocess.run(["apt-cache", "show", p], capture_output=True).returncode != 0:
            fail(f"runtime package {p} is not in Debian's index")
        allowed |= depends(p)
    for binary in binaries:
        path = os.path.join(build_dir, binary[len("build/"):])
        if not os.path.exists(path):
            fail(f"{path} was not built")
            continue
        needed = re.findall(r"\(NEEDED\).*\[(.*)\]", subprocess.run(["readelf", "-d", path], capture_output=True,
                                                                   text=True).stdout)
        for library in needed:
            package = owner(library)
            if package not in allowed:
                fail(f"{os.path.basename(path)} needs {library} from {package}, which the runtime stage does not install")
        print(f"  {os.path.basename(path)}: {len(needed)} libraries, each from the runtime packages or the base image")
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
