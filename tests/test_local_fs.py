"""The local session's Hadoop file system: the modes Hadoop's `chmod` would set, and no forked `chmod`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stockpipe.hadoop import local_fs
from stockpipe.hadoop.local_fs import CLASS_NAME, HADOOP_RAW_LOCAL, find_javac, local_file_system, spark_jars_dir
from stockpipe.session import local_confs

# Spark code whose behaviour Spark Connect (and Spark 4) may change: run in both lanes.
pytestmark = pytest.mark.connect

FIXTURES = Path(__file__).with_name("fixtures")
needs_javac = pytest.mark.skipif(find_javac() is None, reason="no javac here (a Java runtime without the JDK)")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and GNU chmod's rules")


@pytest.fixture
def fresh(monkeypatch):
    """As in a process that has not started its JVM yet (the suite's session has)."""
    monkeypatch.setattr(local_fs, "jvm_launched", lambda: False)


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
@linux_only
@pytest.mark.slow
def test_a_partitioned_write_on_local_disk_forks_no_chmod(spark, tmp_path):
    pid = _spark_jvm_pid()
    if pid is None:
        pytest.skip("the session's JVM is not a child of this process (a remote server)")
    assert spark.conf.get("spark.hadoop.fs.file.impl") == CLASS_NAME
    rows = spark.range(200).selectExpr("id AS partition", "id * 2 AS value")
    rows.write.partitionBy("partition").parquet(str(tmp_path / "warm-up"))  # classes loaded, caches filled
    before = _reaped_children_cpu_ticks(pid)
    rows.write.partitionBy("partition").parquet(str(tmp_path / "table"))
    forked = _reaped_children_cpu_ticks(pid) - before
    # Hadoop's own raw local file system forks a chmod per file and per folder: 400 here, 67 ticks when measured.
    assert forked <= 2, f"the write's forks took {forked} CPU ticks"
    files = sorted((tmp_path / "table").rglob("*.parquet"))
    assert len(files) == 200
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o644}  # Hadoop's default umask, 022
    assert {stat.S_IMODE(f.parent.stat().st_mode) for f in files} == {0o755}
    assert spark.read.parquet(str(tmp_path / "table")).count() == 200


@needs_javac
@linux_only
@pytest.mark.slow
def test_the_class_sets_the_modes_hadoops_chmod_would(tmp_path, fresh):
    built = local_file_system(cache=tmp_path / "cache")
    assert built.classpath is not None
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    assert java is not None
    driver = tmp_path / "driver"
    jars = spark_jars_dir()
    api_jar = next(jars.glob("hadoop-client-api-*.jar"))
    subprocess.run([find_javac() or "javac", "-nowarn", "-cp", f"{built.classpath}{os.pathsep}{api_jar}", "-d",
                    str(driver), str(FIXTURES / "SetPermissions.java")], check=True, capture_output=True)
    plain_file, plain_folder, sticky, set_group = (tmp_path / name for name in ("file", "folder", "sticky", "setgid"))
    plain_file.write_text("x")
    for folder in (plain_folder, sticky, set_group):
        folder.mkdir()
    set_group.chmod(0o2755)
    subprocess.run([java, "-cp", os.pathsep.join([str(driver), built.classpath, str(jars / "*")]), "SetPermissions",
                    str(plain_file), "640", str(plain_folder), "750", str(sticky), "1777", str(set_group), "750"],
                   check=True, capture_output=True, timeout=120)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (plain_file, plain_folder, sticky, set_group)}
    # Not what the process's umask gave them: what `chmod 0640 file` etc. leave, the sticky bit and a folder's kept
    # set-group-ID bit included.
    assert modes == {"file": 0o640, "folder": 0o750, "sticky": 0o1777, "setgid": 0o2750}


@needs_javac
def test_the_class_is_compiled_once_then_reused(tmp_path, fresh):
    built = local_file_system(cache=tmp_path)
    assert built.impl == CLASS_NAME
    assert built.classpath is not None
    reused = local_file_system(javac=str(tmp_path / "no-such-javac"), cache=tmp_path)
    assert (reused.impl, reused.classpath) == (CLASS_NAME, built.classpath)
    assert [p.name for p in tmp_path.iterdir()] == [Path(built.classpath).name]  # no scratch folder left


@needs_javac
@pytest.mark.slow
def test_a_cached_folder_without_a_sound_class_is_built_again(tmp_path, fresh):
    built = local_file_system(cache=tmp_path)
    assert built.classpath is not None
    class_file = Path(built.classpath) / "stockpipe" / "hadoop" / "NioLocalFileSystem.class"
    sound = class_file.read_bytes()
    class_file.write_bytes(b"")
    again = local_file_system(cache=tmp_path)
    assert (again.impl, again.classpath) == (CLASS_NAME, built.classpath)
    assert class_file.read_bytes() == sound
    class_file.unlink()
    assert local_file_system(cache=tmp_path).impl == CLASS_NAME
    assert class_file.read_bytes() == sound


@needs_javac
def test_a_local_session_is_given_the_class_and_its_class_path(tmp_path, monkeypatch, fresh):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    static, _ = local_confs("local[2]")
    assert static["spark.hadoop.fs.file.impl"] == CLASS_NAME
    folder = static["spark.driver.extraClassPath"]
    assert static["spark.executor.extraClassPath"] == folder
    assert Path(folder).parent == tmp_path / "stockpipe"


def test_a_session_whose_executors_may_run_elsewhere_keeps_hadoops_file_system(fresh):
    static, _ = local_confs("spark://cluster.example:7077")
    assert static["spark.hadoop.fs.file.impl"] == HADOOP_RAW_LOCAL
    assert "spark.driver.extraClassPath" not in static
    assert "spark.executor.extraClassPath" not in static


def test_a_process_whose_jvm_already_runs_keeps_hadoops_file_system(monkeypatch):
    monkeypatch.setattr(local_fs, "jvm_launched", lambda: True)
    found = local_file_system("local[2]")
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert "already running" in found.why


def test_without_a_jdk_a_local_session_keeps_hadoops_raw_local_file_system(tmp_path, monkeypatch, fresh):
    monkeypatch.setattr(local_fs, "find_javac", lambda: None)
    found = local_file_system(cache=tmp_path)
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert "no javac" in found.why


def test_a_javac_that_fails_leaves_hadoops_file_system_says_why_and_builds_nothing(tmp_path, fresh):
    javac = tmp_path / "javac"
    javac.write_text("#!/bin/sh\necho 'error: this javac cannot compile' >&2\nexit 2\n")
    javac.chmod(0o755)
    cache = tmp_path / "cache"
    found = local_file_system(javac=str(javac), cache=cache)
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert found.why == "javac failed: error: this javac cannot compile"
    assert list(cache.iterdir()) == []


def test_a_cache_folder_that_cannot_be_made_leaves_hadoops_file_system(tmp_path, fresh):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    found = local_file_system(javac="javac", cache=blocker / "cache")
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert found.why.startswith("cache folder unusable:")


def test_without_hadoops_jar_there_is_nothing_to_compile_against(tmp_path, fresh):
    found = local_file_system(javac="javac", jars_dir=tmp_path, cache=tmp_path / "cache")
    assert (found.impl, found.classpath) == (HADOOP_RAW_LOCAL, None)
    assert found.why == "no hadoop-client-api jar beside Spark's"
