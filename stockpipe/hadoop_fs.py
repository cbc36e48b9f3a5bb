"""The Hadoop file system a local session writes its files with: Hadoop's raw local one, without a fork per file.

pip's Spark ships no Hadoop native library, so Hadoop's local file system sets the permissions of every file and
folder it creates by forking `chmod`. A five-year backfill on delta-spark writes 10,064 files: in `jstack` samples of
its write, the task threads were inside those forks in 89 of 166 samples (docs/backfill.md). `NioLocalFileSystem`
(`spark_conf/NioLocalFileSystem.java`) is Hadoop's raw local file system with the same permissions set through
java.nio inside the JVM. It is compiled here, once per machine, with the JDK's `javac` against the Hadoop jar the
session's Spark ships, into the user's cache folder. Where there is no `javac` (a Java runtime without the JDK) or
it fails, a local session keeps Hadoop's own raw local file system: the same files, written more slowly.

Sessions this project does not start (Databricks, a remote Spark Connect server) keep their own file systems.
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

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("spark_conf") / "NioLocalFileSystem.java"
CLASS_NAME = "stockpipe.hadoop.NioLocalFileSystem"
HADOOP_RAW_LOCAL = "org.apache.hadoop.fs.RawLocalFileSystem"
COMPILE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LocalFileSystem:
    """`fs.file.impl` for a local session, and the class folder that must be on the driver's class path for it."""

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
        candidate = Path(java_home) / "bin" / "javac"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("javac")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stockpipe"


def local_file_system(javac: str | None = None, jars_dir: Path | None = None, cache: Path | None = None
                      ) -> LocalFileSystem:
    """NioLocalFileSystem when it is (or can now be) compiled for this Spark's Hadoop, else Hadoop's raw local one.
    The compiled class lives in a folder named by the source's and the Hadoop jar's digest, so an edit of the source
    or another Spark gets a fresh build, and a build is made once, then reused by every session."""
    hadoop_jars = sorted((jars_dir or spark_jars_dir()).glob("hadoop-client-api-*.jar"))
    if not hadoop_jars:
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, "no hadoop-client-api jar beside Spark's")
    hadoop_jar = hadoop_jars[-1]
    digest = hashlib.sha256(SOURCE.read_bytes() + hadoop_jar.name.encode()).hexdigest()[:16]
    built = (cache or cache_dir()) / f"nio-local-fs-{digest}"
    if _built_class(built).is_file():
        return LocalFileSystem(CLASS_NAME, str(built), f"{CLASS_NAME} from {built}")
    compiler = javac or find_javac()
    if compiler is None:
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, "no javac (a Java runtime without the JDK)")
    failure = _compile(compiler, hadoop_jar, built)
    if failure:
        return LocalFileSystem(HADOOP_RAW_LOCAL, None, f"javac failed: {failure}")
    return LocalFileSystem(CLASS_NAME, str(built), f"{CLASS_NAME} compiled into {built}")


def _compile(javac: str, hadoop_jar: Path, built: Path) -> str | None:
    """Compile into a fresh folder beside `built`, then rename it into place (two sessions compiling at once both
    succeed: the second rename finds the first's folder and leaves it). The error's first line, or None."""
    built.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{built.name}-", dir=built.parent))
    try:
        # Java 8 class files load on every Java Spark runs on; a JDK 8 javac has no --release and takes -source.
        for release in (["--release", "8"], ["-source", "1.8", "-target", "1.8"]):
            try:
                done = subprocess.run(
                    [javac, *release, "-nowarn", "-cp", str(hadoop_jar), "-d", str(scratch), str(SOURCE)],
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
        return None if _built_class(built).is_file() else f"no class in {built}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _built_class(built: Path) -> Path:
    return built / "stockpipe" / "hadoop" / "NioLocalFileSystem.class"
