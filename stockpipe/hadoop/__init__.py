"""Hadoop's file system as a session this project starts on the local machine writes with (`local_fs`), and the
one Java class it compiles for it (`NioLocalFileSystem.java`, in the Java package of the same name)."""
