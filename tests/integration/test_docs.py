"""test_docs.py -- the documentation describes the program that is built:
docs/CONFIGURATION.md carries `ferryd --help` verbatim, and every option in
it is mentioned; every route ferryd serves is in docs/PROTOCOL.md."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import FERRYD, run  # noqa: E402

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read(path):
    with open(os.path.join(TOP, path), encoding="utf-8") as f:
        return f.read()


def test_configuration_doc_has_the_help():
    helptext = subprocess.run([FERRYD, "--help"], capture_output=True, text=True, timeout=10).stdout
    doc = read("docs/CONFIGURATION.md")
    assert helptext.strip() in doc, "docs/CONFIGURATION.md does not carry the current --help"
    options = set(re.findall(r"--([a-z][a-z0-9-]+)", helptext))
    readme = read("README.md")
    for opt in ("listen", "prefix", "publish-key", "allow-origin", "client-publish", "redis"):
        assert opt in options, opt
        assert "--" + opt in readme, "README does not mention --%s" % opt


def test_protocol_doc_names_every_route():
    doc = read("docs/PROTOCOL.md")
    for route in ("/ferry/ws", "/ferry/sse", "/ferry/poll", "/ferry/send", "/ferry/negotiate",
                  "/ferry/publish/", "/ferry/healthz", "/ferry/metrics", "/ferry/echo"):
        assert route in doc, route
    for code in ("1002", "1003", "1007", "1009", "1012", "4008"):
        assert code in doc, code


if __name__ == "__main__":
    run([test_configuration_doc_has_the_help, test_protocol_doc_names_every_route])
