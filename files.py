"""Crash-safe writes, for every stage that writes a file: a file or a directory appears under its
name only once it is complete, and a crash between the steps of a swap is finished at the next start.
Also the one check that a path handed over by someone else stays inside its directory, which both the
writers (a crash recovery must not move a stranger's files) and the model loaders need.

Knows nothing of models: the stages that only write files import this, not checkpoint.py.
"""
import contextlib
import glob
import json
import os
import shutil
import tempfile


# ----------------------------------------------------------------------------------------------
# Paths that must stay inside their directory
# ----------------------------------------------------------------------------------------------
class OutsidePath(ValueError):
    """A path inside a model or run directory leads out of it (a symlink, `..`, an absolute path)."""


def check_inside(path, root):
    """Raise unless `path`, symlinks followed, stays inside the directory `root`: a directory handed
    over by someone else must not make a loader read (or a writer move) a file of this machine."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise OutsidePath(f"{path} leads outside {root} (to {real}); refused: a model or run directory must "
                          "hold its own files, not links to others (copy them in, e.g. `cp -rL`)")
    return path


def check_links_inside(directory):
    """Raise at the first symlink under `directory` that leads outside it."""
    for parent, folders, files in os.walk(directory):  # symlinked folders are listed, not entered
        for name in folders + files:
            path = os.path.join(parent, name)
            if os.path.islink(path):
                check_inside(path, directory)


# ----------------------------------------------------------------------------------------------
# Atomic files and directories
# ----------------------------------------------------------------------------------------------
def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path, text):
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_file(path, mode="wb", encoding=None):
    """Yield a file object open on a temporary sibling of `path`; on success it takes `path`'s place.

    A crash or an exception in the block leaves `path` as it was (or absent) and removes the
    temporary file. Libraries that write to a file object work unchanged: `np.savez(f, ...)`,
    `pickle.dump(obj, f)`, `fig.savefig(f, format="png")`.
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_file: mode {mode!r} must write a new file ('w', 'wb', ...)")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the finished file private
        with open(fd, mode, encoding=encoding) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(directory, carry_over=True):
    """Yield a temporary sibling directory; on success it takes the place of `directory`.

    The swap is two renames, so a crash leaves either the old directory or the new one complete
    (in the instant between the renames, both sit beside the final name, as `.old-` and `.tmp-`).
    With carry_over, entries of the old directory that the writer did not rewrite (a run's
    train_log.csv, its resume/ state) are moved, not copied, into the new one; without, the new
    directory holds only what was written (OFRecord parts of an older, larger run would be read as data).
    """
    directory = os.path.abspath(directory)
    if os.path.islink(directory):  # the swap would move the files of the folder it points to
        raise OutsidePath(f"{directory} is a symlink; refused: it is replaced by a new directory of its own, "
                          "which would move the files of the folder it points to (give that folder instead)")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(directory) + ".tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the finished directory private
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not os.path.isdir(directory):
        os.rename(tmp, directory)
        return
    old = directory + ".old-" + os.path.basename(tmp)
    os.rename(directory, old)
    os.rename(tmp, directory)
    for name in os.listdir(old) if carry_over else ():
        if not os.path.exists(os.path.join(directory, name)):
            os.rename(os.path.join(old, name), os.path.join(directory, name))
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_writes(directory):
    """Finish what a crash (SIGKILL, power loss) interrupted in `directory`: an atomic_dir swap of it
    or of a subdirectory caught between its renames is completed, and temporaries of atomic_file and
    atomic_dir are removed. Call before using a directory such writes may have been cut short in."""
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory) and not glob.glob(glob.escape(directory) + ".old-*"):
        return
    if os.path.isdir(directory):  # what is moved or removed below must be the directory's own
        check_links_inside(directory)
    _finish_swap(directory)
    names = os.listdir(directory) if os.path.isdir(directory) else []
    for name in sorted({n.split(".old-")[0] for n in names if ".old-" in n}):  # subdirectories mid-swap
        _finish_swap(os.path.join(directory, name))
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if ".tmp-" in name or ".old-" in name:
                path = os.path.join(directory, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _finish_swap(directory):
    parent, base = os.path.dirname(directory), os.path.basename(directory)
    for old in glob.glob(os.path.join(glob.escape(parent), glob.escape(base) + ".old-*")):
        if os.path.islink(old):  # never a swap's leftover: its files are not this directory's to take
            raise OutsidePath(f"{old} is a symlink beside {directory}; refused: crash recovery would move the "
                              "files of the folder it points to (remove the link)")
        new = os.path.join(parent, old[len(os.path.join(parent, base) + ".old-"):])  # the finished temporary
        if not os.path.isdir(directory):
            os.rename(new if os.path.isdir(new) else old, directory)
        if os.path.isdir(old):
            for name in os.listdir(old):
                if not os.path.exists(os.path.join(directory, name)):
                    os.rename(os.path.join(old, name), os.path.join(directory, name))
            shutil.rmtree(old, ignore_errors=True)
    for tmp in glob.glob(os.path.join(glob.escape(parent), glob.escape(base) + ".tmp-*")):
        shutil.rmtree(tmp, ignore_errors=True) if os.path.isdir(tmp) else os.remove(tmp)
