#!/usr/bin/env python3
"""The layer check that the build runs (scripts/check_layers.py): the tree as it is passes, and a
back-edge, a forbidden header reached through another, or a file in no declared folder fails the
check with a line that names the file and the include.

usage: check_layers_test.py CHECKER LAYERS_FILE SOURCE_ROOT
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

CHECKER, LAYERS, ROOT = sys.argv[1:4]


def run(layers, root):
    done = subprocess.run([sys.executable, CHECKER, layers, root], capture_output=True, text=True)
    return done.returncode, done.stderr


class TheTree(unittest.TestCase):
    def test_follows_its_layers(self):
        code, err = run(LAYERS, ROOT)
        self.assertEqual(code, 0, err)

    def test_declares_every_engine_room_below_the_next(self):
        with open(LAYERS) as f:
            rooms = [line.split(":")[0] for line in f if line.startswith("worker/engine")]
        self.assertEqual(rooms[:3], ["worker/engine/api", "worker/engine/runtime", "worker/engine/io"])
        with open(LAYERS) as f:
            uses = {line.split(":")[0]: line.split(":")[1].split(",") for line in f}
        # Each room may use the ones before it and none after.
        for i, room in enumerate(rooms):
            self.assertEqual(set(uses[room]) & set(rooms), set(rooms[:i]), room)


class PlantedViolations(unittest.TestCase):
    """A small tree of three layers: low < high, and app, which may not see torch."""

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.layers = os.path.join(self.root, "layers.txt")
        with open(self.layers, "w") as f:
            f.write("low::\nhigh:low:\napp:high:torch\n")
        self.write("low/a.h", '#pragma once\n#include <vector>\n')
        self.write("high/b.h", '#pragma once\n#include "low/a.h"\n')
        self.write("app/main.cc", '#include "high/b.h"\n')

    def tearDown(self):
        shutil.rmtree(self.root)

    def write(self, path, text):
        os.makedirs(os.path.dirname(os.path.join(self.root, path)), exist_ok=True)
        with open(os.path.join(self.root, path), "w") as f:
            f.write(text)

    def test_a_tree_that_follows_its_layers_passes(self):
        self.assertEqual(run(self.layers, self.root), (0, ""))

    def test_a_back_edge_fails_naming_the_file_and_the_include(self):
        self.write("low/a.h", '#pragma once\n#include "high/b.h"\n')
        code, err = run(self.layers, self.root)
        self.assertEqual(code, 1)
        self.assertIn('low/a.h: includes "high/b.h" from high/, which low/ does not use', err)

    def test_skipping_a_layer_needs_it_declared(self):
        self.write("app/main.cc", '#include "low/a.h"\n')
        code, err = run(self.layers, self.root)
        self.assertEqual(code, 1)
        self.assertIn('app/main.cc: includes "low/a.h" from low/, which app/ does not use', err)

    def test_a_forbidden_header_reached_through_another_fails_with_the_chain(self):
        self.write("low/a.h", '#pragma once\n#include <torch/torch.h>\n')
        code, err = run(self.layers, self.root)
        self.assertEqual(code, 1)
        self.assertIn("app/main.cc: torch reaches app/, which forbids it: high/b.h -> low/a.h -> torch/torch.h", err)

    def test_a_file_in_no_declared_folder_fails(self):
        self.write("elsewhere/x.cc", "int x;\n")
        code, err = run(self.layers, self.root)
        self.assertEqual(code, 1)
        self.assertIn("elsewhere/x.cc: lies in no declared folder", err)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
