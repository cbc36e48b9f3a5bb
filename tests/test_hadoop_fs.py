"""The local session's Hadoop file system: files and folders with Hadoop's permissions, and no forked `chmod`."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from stockpipe import hadoop_fs
from stockpipe.hadoop_fs import CLASS_NAME, HADOOP_RAW_LOCAL, find_javac, local_file_system, spark_jars_dir

needs_javac = pytest.mark.skipif(find_javac() is None, reason="no javac here (a Java runtime without the JDK)")


def _spark_jvm_pid() -> int | None:
    """The local session's JVM: the child of this process running java (classic, or a local Connect server)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == me and b"java" in command:
            return int(entry.name)
    return None


def _reaped_children_cpu_ticks(pid: int) -> int:
    """CPU clock ticks of the children `pid` has waited for (cutime + cstime): every forked `chmod` adds to it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[13]) + int(fields[14])


@needs_javac
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts the JVM's children through /proc")
def test_a_partitioned_write_on_local_disk_forks_no_chmod_and_sets_hadoops_permissions(spark, tmp_path):
    pid = _spark_jvm_pid()
    if pid is None:
        pytest.skip("the session's JVM is not a child of this process (a remote server)")
    rows = spark.range(200).selectExpr("id AS partition", "id * 2 AS value")
    rows.write.partitionBy("partition").parquet(str(tmp_path / "warm-up"))  # classes loaded, caches filled
    before = _reaped_children_cpu_ticks(pid)
    rows.write.partitionBy("partition").parquet(str(tmp_path / "table"))
    forked = _reaped_children_cpu_ticks(pid) - before
    # Hadoop's own raw local file system forks a chmod per file and per folder: 400 here, 100+ ticks.
    assert forked <= 2, f"the write's forks took {forked} CPU ticks"
    files = sorted((tmp_path / "table").rglob("*.parquet"))
    assert len(files) == 200
    # What Hadoop sets under its default umask (022), whatever this process's umask is.
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o644}
    assert {stat.S_IMODE(f.parent.stat().st_mode) for f in files} == {0o755}
    assert spark.read.parquet(str(tmp_path / "table")).count() == 200


@needs_javac
def test_the_file_system_is_compiled_once_then_reused(tmp_path):
    built = local_file_system(cache=tmp_path)
    assert built.impl == CLASS_NAME
    assert built.classpath is not None
    assert (Path(built.classpath) / "stockpipe" / "hadoop" / "NioLocalFileSystem.class").is_file()
    reused = local_file_system(javac=str(tmp_path / "no-such-javac"), cache=tmp_path)
    assert (reused.impl, reused.classpath) == (CLASS_NAME, built.classpath)
    assert [p.name for p in tmp_path.iterdir()] == [Path(built.classpath).name]  # no scratch folder left


def test_without_a_jdk_a_local_session_keeps_hadoops_raw_local_file_system(tmp_path, monkeypatch):
    monkeypatch.setattr(hadoop_fs, "find_javac", lambda: None)
    found = local_file_system(cache=tmp_path)
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert "no javac" in found.why


def test_a_javac_that_fails_leaves_hadoops_file_system_says_why_and_builds_nothing(tmp_path):
    javac = tmp_path / "javac"
    javac.write_text("#!/bin/sh\necho 'error: this javac cannot compile' >&2\nexit 2\n")
    javac.chmod(0o755)
    cache = tmp_path / "cache"
    found = local_file_system(javac=str(javac), cache=cache)
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert found.why == "javac failed: error: this javac cannot compile"
    assert list(cache.iterdir()) == []


def test_without_hadoops_jar_there_is_nothing_to_compile_against(tmp_path):
    found = local_file_system(javac="javac", jars_dir=tmp_path, cache=tmp_path / "cache")
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert any(spark_jars_dir().glob("hadoop-client-api-*.jar"))  # and this Spark has one
