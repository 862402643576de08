"""test_layers.py -- the tree keeps the architecture it claims: no C file of
proxy/, transports/ or backend/ calls into a file that calls it back (or a
file of a higher layer), no folder holds more than 12 C files, no file is
over 800 lines (scripts/layers, from the built objects), and
docs/ARCHITECTURE.md names every C file, so a newcomer finds each one."""
import os
import subprocess
import sys

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FERRYD = os.environ.get("FERRYD") or os.path.join(TOP, "ferryd")
BUILD = os.path.dirname(os.path.abspath(FERRYD))


def test_dependencies_point_down():
    res = subprocess.run([sys.executable, os.path.join(TOP, "scripts", "layers"), BUILD, TOP],
                         capture_output=True, text=True, timeout=60)
    print(res.stdout, end="")
    assert "0 problems" in res.stdout, res.stdout + res.stderr
    assert res.returncode == 0


def test_architecture_names_every_file():
    with open(os.path.join(TOP, "docs", "ARCHITECTURE.md"), encoding="utf-8") as f:
        doc = f.read()
    missing = []
    for top in ("proxy", "transports", "backend"):
        for root, _, files in os.walk(os.path.join(TOP, top)):
            for name in files:
                if name.endswith(".c"):
                    path = os.path.relpath(os.path.join(root, name), TOP)
                    if path not in doc:
                        missing.append(path)
    assert not missing, "docs/ARCHITECTURE.md does not name: " + ", ".join(sorted(missing))


if __name__ == "__main__":
    failed = 0
    for t in (test_dependencies_point_down, test_architecture_names_every_file):
        try:
            t()
            print("ok", t.__name__)
        except AssertionError as e:
            failed += 1
            print("FAIL", t.__name__, e)
    print("%d passed, %d failed" % (2 - failed, failed))
    sys.exit(1 if failed else 0)
