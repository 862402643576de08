"""test_layers.py -- the tree keeps the architecture it claims: no C file of
proxy/, transports/ or backend/ calls into a file that calls it back (or a
file of a higher layer), no folder holds more than 12 C files, no file is
over 800 lines (scripts/layers, from the built objects), and
docs/ARCHITECTURE.md names every C file, so a newcomer finds each one; the
C follows .clang-format (clang-format comes with scripts/install-deps --test)."""
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


def test_code_follows_clang_format():
    files = []
    for top in ("proxy", "transports", "backend", "tests/unit", "fuzz", "bench", "examples"):
        for root, _, names in os.walk(os.path.join(TOP, top)):
            files += [os.path.join(root, n) for n in names
                      if n.endswith((".c", ".h")) and not n.startswith("assets")]
    assert files
    res = subprocess.run(["clang-format", "--dry-run", "-Werror", "--style=file"] + sorted(files),
                         capture_output=True, text=True, timeout=120, cwd=TOP)
    out = res.stderr.strip().splitlines()
    assert res.returncode == 0, "not formatted (clang-format -i FILE):\n" + "\n".join(out[:20])


if __name__ == "__main__":
    failed = 0
    tests = (test_dependencies_point_down, test_architecture_names_every_file,
             test_code_follows_clang_format)
    for t in tests:
        try:
            t()
            print("ok", t.__name__)
        except AssertionError as e:
            failed += 1
            print("FAIL", t.__name__, e)
    print("%d passed, %d failed" % (len(tests) - failed, failed))
    sys.exit(1 if failed else 0)
