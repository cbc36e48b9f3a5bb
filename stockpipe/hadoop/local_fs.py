"""The Hadoop file system a local session writes its files with: Hadoop's raw local one, without a fork per file.

pip's Spark ships no Hadoop native library, so Hadoop's local file system sets the permissions of every file and
folder it creates by forking `chmod`, which is where a long backfill's write on delta-spark spent most of its time
(docs/measurements.md). `NioLocalFileSystem`
(beside this module) is Hadoop's raw local file system with the same permissions set through java.nio inside the
JVM. It is compiled here with the JDK's `javac` against the Hadoop jar the session's Spark ships, once per user cache
folder and Hadoop version. Where that cannot be had (a Java runtime without the JDK, a `javac` that fails, a cache
folder that cannot be written) a local session keeps Hadoop's own raw local file system: the same files, written
more slowly.

Only sessions whose executors run on this machine use it (`local[...]` masters: the class is on their class path),
and only when this process has not started its JVM yet (the class path is fixed once it has). Databricks and remote
Spark Connect servers keep their own file systems.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyspark

from stockpipe.compat import jvm_launched

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("NioLocalFileSystem.java")
CLASS_NAME = "stockpipe.hadoop.NioLocalFileSystem"
HADOOP_RAW_LOCAL = "org.apache.hadoop.fs.RawLocalFileSystem"
CLASS_FILE_MAGIC = b"\xca\xfe\xba\xbe"
COMPILE_TIMEOUT_S = 120.0
# Java 8 class files load on every Java Spark runs on. A JDK 8 javac has no --release; a JDK that no longer
# targets 8 compiles for itself, which the Spark it runs can load.
JAVAC_TARGETS = (("--release", "8"), ("-source", "1.8", "-target", "1.8"), ())


@dataclass(frozen=True)
class LocalFileSystem:
    """`fs.file.impl` for a local session, and the class folder that must be on its JVMs' class path for it."""

    impl: str
    classpath: str | None
    why: str


def spark_jars_dir() -> Path:
    """The jars the session's JVM runs: SPARK_HOME's when set (spark-submit takes them from there), else pip's."""
    home = os.environ.get("SPARK_HOME")
    return Path(home) / "jars" if home else Path(pyspark.__file__).parent / "jars"


def find_javac() -> str | None:
    """The JDK compiler of the Java that Spark runs: JAVA_HOME's, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        for name in ("javac", "javac.exe"):
            candidate = Path(java_home) / "bin" / name
            if candidate.is_file():
                return str(candidate)
    return shutil.which("javac")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stockpipe"


def local_file_system(master: str = "local[*]", *, javac: str | None = None, jars_dir: Path | None = None,
                      cache: Path | None = None) -> LocalFileSystem:
    """NioLocalFileSystem when it is (or can now be) compiled for this Spark's Hadoop and the session can load it,
    else Hadoop's raw local one, with the reason."""
    if not master.startswith("local"):
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, f"master {master}: executors may run on other machines")
    if jvm_launched():
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, "this process's JVM is already running: its class path is fixed")
    hadoop_jars = sorted((jars_dir or spark_jars_dir()).glob("hadoop-client-api-*.jar"))
    if not hadoop_jars:
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, "no hadoop-client-api jar beside Spark's")
    try:
        return _built(hadoop_jars[-1], javac, cache or cache_dir())
    except (OSError, RuntimeError) as exc:  # no home folder, a read-only or full disk
        log.info("Hadoop's own local file system (forks chmod for each file): cache folder unusable: %s", exc)
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, f"cache folder unusable: {exc}")


def _built(hadoop_jar: Path, javac: str | None, cache: Path) -> LocalFileSystem:
    """The compiled class in a folder named by the source's and the Hadoop jar's digest (an edit of the source or
    another Spark gets a build of its own), compiled first if that folder holds no sound class file."""
    digest = hashlib.sha256(SOURCE.read_bytes() + hadoop_jar.name.encode()).hexdigest()[:16]
    built = cache / f"nio-local-fs-{digest}"
    if _sound_class(built):
        return LocalFileSystem(CLASS_NAME, str(built), f"{CLASS_NAME} from {built}")
    compiler = javac or find_javac()
    if compiler is None:
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, "no javac (a Java runtime without the JDK)")
    shutil.rmtree(built, ignore_errors=True)  # a folder left without its class (a cache cleaner, a crash)
    failure = _compile(compiler, hadoop_jar, built)
    if failure:
        log.info("Hadoop's own local file system (forks chmod for each file): javac failed: %s", failure)
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, f"javac failed: {failure}")
    return LocalFileSystem(CLASS_NAME, str(built), f"{CLASS_NAME} compiled into {built}")


def _compile(javac: str, hadoop_jar: Path, built: Path) -> str | None:
    """Compile into a fresh folder beside `built`, then rename it into place (two sessions compiling at once both
    succeed: the second rename finds the first's folder and leaves it). The error's first line, or None."""
    built.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{built.name}-", dir=built.parent))
    try:
        for target in JAVAC_TARGETS:
            try:
                done = subprocess.run(
                    [javac, *target, "-nowarn", "-cp", str(hadoop_jar), "-d", str(scratch), str(SOURCE)],
                    capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if done.returncode == 0:
                break
        else:
            return (done.stderr or done.stdout or f"exit {done.returncode}").strip().splitlines()[0]
        try:
            scratch.rename(built)
        except OSError:  # another session's build got there first; it is used if it holds the class
            pass
        return None if _sound_class(built) else f"no class file in {built}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sound_class(built: Path) -> bool:
    """The compiled class is there and is a class file (an empty or foreign file there would fail every write of the
    session; a build lands whole, by a rename)."""
    try:
        with (built / "stockpipe" / "hadoop" / "NioLocalFileSystem.class").open("rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return len(head) == 8 and head.startswith(CLASS_FILE_MAGIC)
