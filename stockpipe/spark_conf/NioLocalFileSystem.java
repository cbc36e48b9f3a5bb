// Hadoop's raw local file system, with each new file's and folder's permissions set through java.nio in this JVM
// instead of a forked `chmod` (Hadoop forks one per file and folder when its native library is missing, as it is
// from pip's Spark). Compiled by stockpipe/hadoop_fs.py with the JDK's javac, once per machine; a local session uses
// it as fs.file.impl. The permissions set are the ones Hadoop would set: the same mode, applied to the same file.
package stockpipe.hadoop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

public class NioLocalFileSystem extends RawLocalFileSystem {
  // Bit i of a permission's mode (0 = others execute ... 8 = owner read), as chmod reads an octal mode.
  private static final PosixFilePermission[] MODE_BITS = {
    PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
    PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
    PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
  };

  @Override
  public void setPermission(Path path, FsPermission permission) throws IOException {
    short mode = permission.toShort();
    if ((mode & ~0777) != 0) {
      // The sticky bit has no java.nio name: Hadoop's own way (chmod) sets it.
      super.setPermission(path, permission);
      return;
    }
    Set<PosixFilePermission> permissions = EnumSet.noneOf(PosixFilePermission.class);
    for (int bit = 0; bit < MODE_BITS.length; bit++) {
      if ((mode & (1 << bit)) != 0) {
        permissions.add(MODE_BITS[bit]);
      }
    }
    try {
      Files.setPosixFilePermissions(pathToFile(path).toPath(), permissions);
    } catch (UnsupportedOperationException notPosix) {
      // A file system without POSIX permissions (Windows): Hadoop's own way.
      super.setPermission(path, permission);
    }
  }
}
