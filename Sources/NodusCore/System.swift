import CNodusKernels
#if canImport(Glibc)
import Glibc
#endif

/// Facts about the machine.
public enum System {
    /// Online cores, read once.
    public static let coreCount: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// The bytes this process can still allocate without swapping or meeting its memory limit:
    /// the kernel's `MemAvailable`, or less when a cgroup v2 `memory.max` leaves less. Read anew
    /// at each call (plans are built rarely); nil when neither can be read.
    public static func availableMemory() -> Int? {
        let machine = readFile("/proc/meminfo").flatMap { meminfo -> Int? in
            guard let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
                  let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
            return kilobytes * 1024
        }
        let group = cgroupHeadroom()
        switch (machine, group) {
        case let (machine?, group?): return min(machine, group)
        case let (machine, group): return machine ?? group
        }
    }

    /// Hands the heap's free pages back to the kernel (glibc's `malloc_trim`): after work
    /// that leaves many small blocks freed (an ONNX import), they still count in the RSS.
    public static func returnFreeHeapPages() {
        nodus_heap_return_free_pages()
    }

    /// `memory.max - memory.current` of this process's cgroup v2, or nil without a limit.
    private static func cgroupHeadroom() -> Int? {
        // "0::/path" is the cgroup v2 line of /proc/self/cgroup.
        guard let membership = readFile("/proc/self/cgroup")?.split(separator: "\n")
                .first(where: { $0.hasPrefix("0::") }) else { return nil }
        let folder = "/sys/fs/cgroup" + membership.dropFirst(3)
        func number(_ name: String) -> Int? {
            readFile("\(folder)/\(name)").flatMap { Int($0.filter { !$0.isWhitespace }) }
        }
        guard let limit = number("memory.max"), let current = number("memory.current") else { return nil }
        return max(0, limit - current)
    }

    /// A small text file of the kernel's, or nil when it cannot be read.
    private static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let count = fread(&buffer, 1, buffer.count, file)
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
