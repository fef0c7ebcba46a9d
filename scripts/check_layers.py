#!/usr/bin/env python3
"""Checks every #include of the tree against the declared layers (cmake/layers.cmake).

usage: check_layers.py LAYERS_FILE SOURCE_ROOT

LAYERS_FILE has one line per folder, "folder:used,folders:forbidden,tags" (what shears_layer
writes). Exits 1, printing one line per violation, when
  - a file includes a project header from a folder its own folder does not use, or
  - something its folder forbids (torch, grpc, proto) reaches it, directly or through the project
    headers it includes (the chain is printed), or
  - a C++ file lies in no declared folder.
"""

import fnmatch
import os
import re
import sys

# The external headers each tag stands for, by include prefix.
TAGS = {
    "torch": ("torch/", "ATen/", "c10/", "caffe2/"),
    "grpc": ("grpcpp/", "grpc/", "grpc++/"),
    "proto": ("google/protobuf/", "shears/v1/"),
}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)
SOURCE_SUFFIXES = (".h", ".cc", ".hpp", ".cpp")


class Layer:
    def __init__(self, folder, uses, forbids):
        self.folder = folder
        self.uses = uses
        self.forbids = forbids

    def may_use(self, folder):
        return folder == self.folder or any(folder == u or fnmatch.fnmatch(folder, u) for u in self.uses)


def read_layers(path):
    layers = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            folder, uses, forbids = (line.split(":") + ["", ""])[:3]
            layers[folder] = Layer(folder, [u for u in uses.split(",") if u], [t for t in forbids.split(",") if t])
    return layers


def layer_of(path, layers):
    """The deepest declared folder holding `path` (relative to the root), or None."""
    folder = os.path.dirname(path)
    while True:
        if folder in layers:
            return layers[folder]
        if not folder:
            return None
        folder = os.path.dirname(folder)


def tag_of(header):
    for tag, prefixes in TAGS.items():
        if header.startswith(prefixes):
            return tag
    return None


class Tree:
    def __init__(self, root, layers):
        self.root = root
        self.layers = layers
        self.includes = {}  # relative path -> [(header, is_project)]

    def includes_of(self, path):
        if path not in self.includes:
            with open(os.path.join(self.root, path), encoding="utf-8", errors="replace") as f:
                text = f.read()
            found = []
            for quote, header in INCLUDE.findall(text):
                project = quote == '"' and os.path.exists(os.path.join(self.root, header))
                found.append((header, project))
            self.includes[path] = found
        return self.includes[path]

    def forbidden_chain(self, path, tag, seen):
        """A chain of includes from `path` to a header of `tag`, or None."""
        for header, project in self.includes_of(path):
            if not project:
                if tag_of(header) == tag:
                    return [header]
                continue
            if header in seen:
                continue
            seen.add(header)
            chain = self.forbidden_chain(header, tag, seen)
            if chain:
                return [header] + chain
        return None


def sources(root):
    skip = {".git", "build", "node_modules", ".demo"}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("build"))
        for name in sorted(filenames):
            if name.endswith(SOURCE_SUFFIXES):
                yield os.path.relpath(os.path.join(dirpath, name), root)


def check(layers, root):
    tree = Tree(root, layers)
    problems = []
    for path in sources(root):
        layer = layer_of(path, layers)
        if layer is None:
            problems.append(f"{path}: lies in no declared folder (add a shears_layer for it)")
            continue
        if "*" in layer.uses:
            continue
        for header, project in tree.includes_of(path):
            if not project:
                continue
            target = layer_of(header, layers)
            target_folder = target.folder if target else os.path.dirname(header)
            if not layer.may_use(target_folder):
                problems.append(f'{path}: includes "{header}" from {target_folder}/, which {layer.folder}/ does not use')
        for tag in layer.forbids:
            chain = tree.forbidden_chain(path, tag, set())
            if chain:
                problems.append(f"{path}: {tag} reaches {layer.folder}/, which forbids it: " + " -> ".join(chain))
    return problems


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(read_layers(argv[1]), argv[2])
    for p in problems:
        print(f"check_layers: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
