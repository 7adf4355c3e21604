"""Small helpers shared by the test files."""
import hashlib
import os


def digest(folder):
    """{relative path: SHA-256} of every file under `folder`: to show nothing was touched."""
    out = {}
    for top, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(top, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out
