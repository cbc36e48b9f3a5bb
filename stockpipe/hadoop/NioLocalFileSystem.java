// Hadoop's raw local file system, with each new file's and folder's permissions set through java.nio in this JVM
// instead of a forked `chmod` (Hadoop forks one per file and folder when its native library is missing, as it is
// from pip's Spark). Compiled by stockpipe/hadoop/local_fs.py with the JDK's javac; a local session uses it as
// fs.file.impl. The modes set are the ones Hadoop's `chmod` would leave: where java.nio cannot say the same (the
// sticky bit, a folder's set-user/group-ID bits, which `chmod` with a four-digit mode keeps, a file system without
// POSIX permissions) Hadoop's own way is taken.
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
  // Bit i of a mode (0 = others execute ... 8 = owner read), as chmod reads an octal mode.
  private static final PosixFilePermission[] MODE_BITS = {
    PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
    PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
    PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
  };
  private static final int SET_ID_BITS = 06000;

  @Override
  public void setPermission(Path path, FsPermission permission) throws IOException {
    short mode = permission.toShort();
    java.nio.file.Path target = pathToFile(path).toPath();
    if ((mode & ~0777) != 0 || keepsSetIdBits(target)) {
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
      Files.setPosixFilePermissions(target, permissions);
    } catch (UnsupportedOperationException notPosix) {
      super.setPermission(path, permission);
    }
  }

  /** A folder with a set-user/group-ID bit: `chmod` keeps it, java.nio would clear it. */
  private static boolean keepsSetIdBits(java.nio.file.Path target) {
    if (!Files.isDirectory(target)) {
      return false;
    }
    try {
      return (((Integer) Files.getAttribute(target, "unix:mode")) & SET_ID_BITS) != 0;
    } catch (IOException | UnsupportedOperationException | IllegalArgumentException unknown) {
      return false;
    }
  }
}
