#if canImport(Glibc)
import Glibc
#endif

/// A folder of this fuzzing process's own, for the parsers that read a path: each input is
/// written to a file there, over the last one. `$TMPDIR/nodus-fuzz-<pid>`, removed at exit.
public enum ScratchFolder {
    public static let path: String = {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        let folder = "\(base)/nodus-fuzz-\(getpid())"
        mkdir(folder, 0o755)
        atexit { removeTree(ScratchFolder.path) }
        return folder
    }()

    /// Writes `bytes` to `name` (a path relative to the folder; its own folders are made) and
    /// returns the file's path.
    @discardableResult
    public static func write(_ bytes: UnsafeRawBufferPointer, to name: String) -> String {
        let file = path + "/" + name
        makeFolders(of: name)
        let descriptor = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { fatalError("cannot write the fuzz input to '\(file)'") }
        var done = 0
        while done < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + done, bytes.count - done)
            guard written > 0 else { fatalError("cannot write the fuzz input to '\(file)'") }
            done += written
        }
        close(descriptor)
        return file
    }

    /// Removes `name` (a file) when it exists, so an input without that file leaves none behind.
    public static func remove(_ name: String) {
        unlink(path + "/" + name)
    }

    /// A symbolic link `name` to `target` (a fixture that stays the same for every input), made
    /// by the first input that needs it.
    @discardableResult
    public static func link(_ name: String, to target: String) -> String {
        let file = path + "/" + name
        var status = stat()
        if lstat(file, &status) == 0 { return file }
        makeFolders(of: name)
        symlink(target, file)
        return file
    }

    /// Makes the folders `name` lies in, below the scratch folder.
    private static func makeFolders(of name: String) {
        var folder = path
        for component in name.split(separator: "/").dropLast() {
            folder += "/" + component
            mkdir(folder, 0o755)
        }
    }

    private static func removeTree(_ folder: String) {
        guard let directory = opendir(folder) else { return }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name == "." || name == ".." { continue }
            let child = folder + "/" + name
            var status = stat()
            if lstat(child, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR {
                removeTree(child)
            } else {
                unlink(child)
            }
        }
        closedir(directory)
        rmdir(folder)
    }
}
