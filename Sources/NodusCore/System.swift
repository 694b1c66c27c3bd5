#if canImport(Glibc)
import Glibc
#endif

/// Facts about the machine, read once.
public enum System {
    /// Online cores.
    public static let coreCount: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}
